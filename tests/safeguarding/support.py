"""Test data for the safeguarding tests, built from the examples in fhir_profiles/examples (test-range
NHS numbers only): the child (9990000018, born 2023-03-14), her mother (9990000026), her father as a
RelatedPerson (9990000034), the local authority with office-hours and out-of-hours numbers, the 0-19
service and an ED."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from app.fhir.profiles import get_store

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
CS = "https://fhir.safeflag.example/CodeSystem/"
CATEGORY = CS + "safeguarding-flag-category"
EXT = "https://fhir.safeflag.example/StructureDefinition/"
CHILD, MOTHER, FATHER = "Patient/example-child", "Patient/example-mother", "RelatedPerson/example-father"
LA, ZERO19, ED = "Organization/example-local-authority", "Organization/example-zero-to-nineteen", "Organization/ed"
CHILD_NHS, MOTHER_NHS = "9990000018", "9990000026"

# Contract section 4, written out independently of the ConceptMap the server reads it from.
CONTRACT_CODES: dict[str, tuple[str, str]] = {
    "child-protection-plan": (SNOMED, "342191000000101"),
    "looked-after-child": (SNOMED, "764841000000100"),
    "unborn-child-protection-plan": (SNOMED, "818901000000100"),
    "fgm": (SNOMED, "902961000000107"),
    "risk-to-self": (SNOMED, "886941000000103"),
    "risk-to-others": (SNOMED, "886951000000100"),
    "risk-from-others": (SNOMED, "1064461000000103"),
    "exploitation-risk": (CATEGORY, "exploitation-risk"),
    "significant-adult": (CATEGORY, "significant-adult"),
    "did-not-wait": (CATEGORY, "did-not-wait"),
    "not-brought": (CATEGORY, "not-brought"),
}
OFFICE_HOURS = {"system": "phone", "value": "01632 960001", "use": "work", "rank": 1}
OUT_OF_HOURS = {"system": "phone", "value": "01632 960999", "use": "work", "rank": 2}


def example(rid: str) -> dict[str, Any]:
    """A deep copy of the fhir_profiles example with this id."""
    for _path, resource in get_store().examples:
        if resource["id"] == rid:
            return copy.deepcopy(resource)
    raise KeyError(rid)


def patient(rid: str, nhs: str, birth: str | None, gender: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": rid, "identifier": [{"system": NHS, "value": nhs}],
                           "name": [{"family": "Test", "given": [rid]}]}
    if birth:
        out["birthDate"] = birth
    if gender:
        out["gender"] = gender
    return out


def organization(rid: str, name: str, *telecom: dict[str, Any]) -> dict[str, Any]:
    org: dict[str, Any] = {"resourceType": "Organization", "id": rid, "name": name}
    if telecom:
        org["telecom"] = list(telecom)
    return org


def local_authority() -> dict[str, Any]:
    """Children's services with its office-hours number and its out-of-hours emergency duty team."""
    org = organization("example-local-authority", "Example Borough Children's Services", OFFICE_HOURS, OUT_OF_HOURS)
    org["contact"] = [
        {"purpose": {"text": "Office hours (Mon-Fri 09:00-17:00)"}, "telecom": [OFFICE_HOURS]},
        {"purpose": {"text": "Out of hours emergency duty team"}, "telecom": [OUT_OF_HOURS]},
    ]
    return org


def flag(category: str, subject: str | dict[str, Any], author: str = LA, **extra: Any) -> dict[str, Any]:
    system, code = CONTRACT_CODES[category]
    return {
        "resourceType": "Flag",
        "status": "active",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": subject} if isinstance(subject, str) else subject,
        "period": {"start": "2026-01-01"},
        "author": {"reference": author},
        **extra,
    }


def by_nhs(nhs: str) -> dict[str, Any]:
    return {"type": "Patient", "identifier": {"system": NHS, "value": nhs}}


def reason(code: str = "plan-ended") -> dict[str, Any]:
    return {"url": EXT + "status-reason",
            "valueCodeableConcept": {"coding": [{"system": CS + "status-reason", "code": code}]}}


def adult(rid: str = "example-father") -> dict[str, Any]:
    return {"url": EXT + "significant-adult", "valueReference": {"reference": f"RelatedPerson/{rid}"}}


def rule(msg: str, expression: str, code: str = "business-rule") -> dict[str, Any]:
    return {"severity": "error", "code": code, "diagnostics": msg, "expression": [expression]}


def oo(*issues: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


async def put(client: httpx.AsyncClient, resource: dict[str, Any], headers: dict[str, str] | None = None
              ) -> dict[str, Any]:
    r = await client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers)
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = r.json()
    return out


async def post(client: httpx.AsyncClient, resource: dict[str, Any], headers: dict[str, str] | None = None
               ) -> dict[str, Any]:
    r = await client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def borough(client: httpx.AsyncClient) -> None:
    """The organisations, the child, her mother and her father (as the examples name them)."""
    await put(client, local_authority())
    await put(client, organization("example-zero-to-nineteen", "Example 0-19 Service"))
    await put(client, organization("ed", "Example Hospital Emergency Department"))
    for rid in ("example-child", "example-mother", "example-father"):
        await put(client, example(rid))


async def ids(client: httpx.AsyncClient, url: str) -> list[tuple[str, str, str]]:
    """(search mode, type, id) of each entry of a searchset."""
    r = await client.get(url)
    assert r.status_code == 200, r.text
    return [(e["search"]["mode"], e["resource"]["resourceType"], e["resource"].get("id", ""))
            for e in r.json().get("entry", [])]


async def count(client: httpx.AsyncClient, rtype: str) -> int:
    total: int = (await client.get(f"/fhir/{rtype}?_summary=count")).json()["total"]
    return total
