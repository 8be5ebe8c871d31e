"""Profile validation on the HAPI sandbox: our own conformance resources (tests/hapi/fixtures/profiles)
are PUT to HAPI, then examples go through `POST Flag/$validate?profile=<canonical>`.
https://hl7.org/fhir/R4/resource-operation-validate.html

HAPI 8.8.0 quirks pinned here so the validation phase does not trip over them: `profile` must be a URL
parameter (in a Parameters body HAPI 8.8.0 mangles `valueUri`), and an unknown `?profile=` is reported only
when the resource itself declares no meta.profile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.hapi.support import FHIR_JSON, INVALID, PROFILES, load

pytestmark = pytest.mark.hapi

FLAG_PROFILE = "https://fhir.safeflag.example/StructureDefinition/sandbox-test-flag"
CONCERN_SYSTEM = "https://fhir.safeflag.example/CodeSystem/sandbox-test-concern"
CONCERN_VALUESET = "https://fhir.safeflag.example/ValueSet/sandbox-test-concern"
NO_ISSUES = {
    "resourceType": "OperationOutcome",
    "issue": [{
        "severity": "information",
        "code": "informational",
        "diagnostics": "No issues detected during validation",
    }],
}


@pytest.fixture(scope="module")
async def conformance_uploaded(hapi_base_url: str) -> AsyncIterator[list[str]]:
    """PUT every CodeSystem, ValueSet and StructureDefinition of the fixtures (CodeSystems first)."""
    order = {"CodeSystem": 0, "ValueSet": 1, "StructureDefinition": 2}
    resources = sorted(
        (r for r in map(load, sorted(PROFILES.glob("*.json"))) if r["resourceType"] in order),
        key=lambda r: order[r["resourceType"]],
    )
    async with httpx.AsyncClient(base_url=hapi_base_url, timeout=120.0) as http:
        uploaded = []
        for resource in resources:
            path = f"{resource['resourceType']}/{resource['id']}"
            response = await http.put(f"/{path}", json=resource, headers={"Content-Type": FHIR_JSON})
            # 201 on a fresh sandbox; 200 when SAFEFLAG_HAPI_URL points at one that already has them.
            assert response.status_code in (200, 201), response.text
            uploaded.append(path)
        yield uploaded


async def _validate(
    hapi: httpx.AsyncClient, resource: dict[str, Any] | bytes, profile: str
) -> httpx.Response:
    body = resource if isinstance(resource, bytes) else orjson.dumps(resource)
    return await hapi.post("/Flag/$validate", params={"profile": profile}, content=body,
                           headers={"Content-Type": FHIR_JSON})


def _issues(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """Issues without HAPI's line/column extensions and `location` (positions in the text we sent)."""
    assert outcome["resourceType"] == "OperationOutcome"
    assert set(outcome) == {"resourceType", "issue"}
    out = []
    for issue in outcome["issue"]:
        kept = {k: v for k, v in issue.items() if k not in ("extension", "location")}
        if "expression" in issue:
            assert issue["location"][0] == issue["expression"][0]
        out.append(kept)
    return out


def _java_core(message_id: str) -> dict[str, Any]:
    return {"coding": [{"system": "http://hl7.org/fhir/java-core-messageId", "code": message_id}]}


async def test_conformance_resources_are_stored_and_usable(
    hapi: httpx.AsyncClient, conformance_uploaded: list[str]
) -> None:
    assert conformance_uploaded == [
        "CodeSystem/sandbox-test-concern",
        "ValueSet/sandbox-test-concern",
        "StructureDefinition/sandbox-test-flag",
    ]
    found = (await hapi.get("/StructureDefinition", params={"url": FLAG_PROFILE})).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["sandbox-test-flag"]
    expanded = await hapi.get("/ValueSet/$expand", params={"url": CONCERN_VALUESET})
    assert expanded.status_code == 200
    assert expanded.json()["expansion"]["contains"] == [
        {"system": CONCERN_SYSTEM, "code": "neglect", "display": "Neglect"},
        {"system": CONCERN_SYSTEM, "code": "physical-abuse", "display": "Physical abuse"},
    ]


async def test_valid_example_has_no_issues(hapi: httpx.AsyncClient, conformance_uploaded: list[str]) -> None:
    response = await _validate(hapi, (PROFILES / "Flag-sandbox-test-valid.json").read_bytes(), FLAG_PROFILE)
    assert response.status_code == 200
    assert response.json() == NO_ISSUES


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            "Flag-sandbox-test-bad-category.json",
            [
                {
                    "severity": "error",
                    "code": "processing",
                    "details": _java_core("Terminology_PassThrough_TX_Message"),
                    "diagnostics": f"Unable to validate code {CONCERN_SYSTEM}#not-a-concern - "
                                   f"Code is not found in CodeSystem: {CONCERN_SYSTEM}",
                    "expression": ["Flag.category[0]"],
                },
                {
                    "severity": "error",
                    "code": "processing",
                    "details": _java_core("Terminology_TX_NoValid_1_CC"),
                    "diagnostics": "None of the codings provided are in the value set "
                                   f"'Sandbox test concern' ({CONCERN_VALUESET}|0.1.0), and a coding from "
                                   f"this value set is required) (codes = {CONCERN_SYSTEM}#not-a-concern)",
                    "expression": ["Flag.category[0]"],
                },
            ],
        ),
        (
            "Flag-sandbox-test-no-period.json",
            [
                {
                    "severity": "error",
                    "code": "processing",
                    "details": _java_core("Validation_VAL_Profile_Minimum"),
                    "diagnostics": "Flag.period: minimum required = 1, but only found 0 "
                                   f"(from {FLAG_PROFILE}|0.1.0)",
                    "expression": ["Flag"],
                },
            ],
        ),
    ],
)
async def test_invalid_examples_report_the_profile_errors(
    hapi: httpx.AsyncClient, conformance_uploaded: list[str], example: str, expected: list[dict[str, Any]]
) -> None:
    # HAPI answers $validate with 200 even when the outcome holds errors (the operation itself succeeded).
    response = await _validate(hapi, (INVALID / example).read_bytes(), FLAG_PROFILE)
    assert response.status_code == 200
    assert _issues(response.json()) == expected


async def test_profile_named_only_in_the_url_is_applied(
    hapi: httpx.AsyncClient, conformance_uploaded: list[str]
) -> None:
    """A resource that declares only the core Flag profile is still checked against `?profile=`."""
    flag = _without_period_declaring(["http://hl7.org/fhir/StructureDefinition/Flag"])
    response = await _validate(hapi, flag, FLAG_PROFILE)
    assert [i["diagnostics"] for i in _issues(response.json())] == [
        f"Flag.period: minimum required = 1, but only found 0 (from {FLAG_PROFILE}|0.1.0)"
    ]
    # And the core definition alone finds nothing wrong with the same resource.
    assert (await _validate(hapi, flag, "http://hl7.org/fhir/StructureDefinition/Flag")).json() == NO_ISSUES


async def test_unknown_profile_is_reported_only_without_meta_profile(
    hapi: httpx.AsyncClient, conformance_uploaded: list[str]
) -> None:
    unknown = "https://fhir.safeflag.example/StructureDefinition/no-such-profile"
    bare = _without_period_declaring(None)
    assert _issues((await _validate(hapi, bare, unknown)).json()) == [{
        "severity": "error",
        "code": "processing",
        "details": _java_core("Validation_VAL_Profile_Unknown"),
        "diagnostics": f"Invalid profile. Failed to retrieve profile with url={unknown}",
    }]
    # HAPI 8.8.0 difference: with a meta.profile present the unknown ?profile= is silently dropped, so a
    # $validate call must never be the only proof that a resource was checked against the profile we meant.
    valid = load(PROFILES / "Flag-sandbox-test-valid.json")
    assert (await _validate(hapi, valid, unknown)).json() == NO_ISSUES


async def test_profile_as_parameters_value_uri_is_mangled_by_hapi(
    hapi: httpx.AsyncClient, conformance_uploaded: list[str]
) -> None:
    """$validate declares `profile` as a uri, but HAPI 8.8.0 looks up "UriType[...]" when it comes as valueUri
    in a Parameters body. Hence every call here passes the profile as a URL parameter."""
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": load(PROFILES / "Flag-sandbox-test-valid.json")},
            {"name": "profile", "valueUri": FLAG_PROFILE},
        ],
    }
    response = await hapi.post("/Flag/$validate", json=parameters, headers={"Content-Type": FHIR_JSON})
    assert [i["diagnostics"] for i in _issues(response.json())] == [
        f"Invalid profile. Failed to retrieve profile with url=UriType[{FLAG_PROFILE}]"
    ]


def _without_period_declaring(profiles: list[str] | None) -> dict[str, Any]:
    flag = load(INVALID / "Flag-sandbox-test-no-period.json")
    if profiles is None:
        del flag["meta"]
    else:
        flag["meta"] = {"profile": profiles}
    return flag


def test_fixture_examples_name_the_profile() -> None:
    """The examples above are only meaningful if they declare the profile under test."""
    for path in [*PROFILES.glob("Flag-*.json"), *INVALID.glob("*.json")]:
        assert load(Path(path))["meta"]["profile"] == [FLAG_PROFILE], path
