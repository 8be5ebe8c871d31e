"""SafeFlag's conformance resources on the HAPI sandbox, and `$validate` calls against them.

`upload_profiles` PUTs every CodeSystem, ValueSet, StructureDefinition, SearchParameter, ConceptMap and
OperationDefinition of `fhir_profiles/` (in that order: a ValueSet's CodeSystem and a profile's ValueSets must exist first) with
its own id. The four `SubscriptionTopic/` files (R4 `Basic` descriptors with R5 cross-version extensions)
are left out: HAPI stores them, but its validator cannot check them offline (fhir_profiles/README.md), no
instance refers to them, and HAPI's own topic machinery reads Basic resources of that shape.
`upload_backport` PUTs `tests/hapi/backport/` the same way: the Subscriptions Backport IG STU 1.1
definitions SafeFlag's notifications, Subscriptions and CapabilityStatement use, transcribed there because
HAPI cannot fetch them offline (differentials only; HAPI generates the snapshots). `validate` runs
`POST /fhir/<type>/$validate?profile=<url>` (HAPI 8.8.0 takes `profile` only as a URL parameter; see
test_validation.py) and returns the issues without HAPI's line/column extensions and `location`. A
Parameters resource is posted wrapped in the operation's own Parameters, which HAPI validates as posted:
the wrapper goes against core Parameters and the resource inside against the profiles it claims.
https://hl7.org/fhir/R4/resource-operation-validate.html
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

PROFILES_DIR = Path(__file__).resolve().parents[2] / "fhir_profiles"
EXAMPLES_DIR = PROFILES_DIR / "examples"
BACKPORT_DIR = Path(__file__).resolve().parent / "backport"
FHIR_JSON = "application/fhir+json"
SD = "https://fhir.safeflag.example/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"
UPLOAD_ORDER = ("CodeSystem", "ValueSet", "StructureDefinition", "SearchParameter", "ConceptMap", "OperationDefinition")
# The one issue HAPI reports for every resource without a narrative: a best-practice warning (dom-6).
DOM6 = (
    "Constraint failed: dom-6: 'A resource should have narrative for robust management' (defined in "
    "http://hl7.org/fhir/StructureDefinition/DomainResource) (Best Practice Recommendation)"
)


def conformance_resources() -> list[dict[str, Any]]:
    """fhir_profiles/ conformance resources in upload order, each folder sorted by file name."""
    out: list[dict[str, Any]] = []
    for folder in UPLOAD_ORDER:
        out += [orjson.loads(p.read_bytes()) for p in sorted((PROFILES_DIR / folder).glob("*.json"))]
    return out


def backport_resources() -> list[dict[str, Any]]:
    """tests/hapi/backport/ (files named `<Type>-<id>.json`) in upload order, each type sorted by file name."""
    out: list[dict[str, Any]] = []
    for rtype in UPLOAD_ORDER:
        out += [orjson.loads(p.read_bytes()) for p in sorted(BACKPORT_DIR.glob(f"{rtype}-*.json"))]
    return out


def examples() -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) of every fhir_profiles example."""
    return [(p.name, orjson.loads(p.read_bytes())) for p in sorted(EXAMPLES_DIR.glob("*.json"))]


async def upload_profiles(hapi: httpx.AsyncClient) -> list[str]:
    """PUT each conformance resource; `Type/id` of each, in order. 201 on a fresh sandbox, 200 when a
    reused one (SAFEFLAG_HAPI_URL) already holds it."""
    return await _put_all(hapi, conformance_resources())


async def upload_backport(hapi: httpx.AsyncClient) -> list[str]:
    """PUT the Backport IG definitions of tests/hapi/backport/; `Type/id` of each, in order."""
    return await _put_all(hapi, backport_resources())


async def _put_all(hapi: httpx.AsyncClient, resources: list[dict[str, Any]]) -> list[str]:
    uploaded = []
    for resource in resources:
        path = f"{resource['resourceType']}/{resource['id']}"
        response = await hapi.put(
            f"/{path}", content=orjson.dumps(resource), headers={"Content-Type": FHIR_JSON}
        )
        assert response.status_code in (200, 201), f"{path}: {response.status_code} {response.text}"
        uploaded.append(path)
    return uploaded


async def search_parameters_ready(hapi: httpx.AsyncClient, timeout: float = 120.0) -> None:
    """HAPI refreshes its search parameter registry asynchronously after a SearchParameter is written; until
    then `Flag?status=` is an unknown parameter (400), and Flags written meanwhile are not indexed by it."""
    deadline = time.monotonic() + timeout
    while (
        await hapi.get("/Flag", params={"status": "active", "category": "x", "_count": "0"})
    ).status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"HAPI did not pick up the Flag SearchParameters within {timeout:.0f}s")
        await asyncio.sleep(1.0)


def profile_of(resource: dict[str, Any]) -> str:
    """The profile a resource claims (the first meta.profile), else the core one of its type."""
    claimed = (resource.get("meta") or {}).get("profile") or []
    return str(claimed[0]) if claimed else CORE + str(resource["resourceType"])


async def validate(hapi: httpx.AsyncClient, resource: dict[str, Any], profile: str) -> list[dict[str, Any]]:
    """HAPI's issues for `resource` against `profile` (HAPI answers 200 even when there are errors).
    A Parameters resource goes wrapped in the operation's own Parameters (`resource`): posted bare,
    HAPI would read it as the operation's input and find no resource to validate. HAPI applies
    `?profile=` to the body as posted, the wrapper, so that is checked against core Parameters and the
    wrapped resource against the profiles it claims, which must include `profile`."""
    body, applied = resource, profile
    if resource["resourceType"] == "Parameters":
        assert profile == CORE + "Parameters" or profile in (resource.get("meta") or {}).get("profile", []), profile
        body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}]}
        applied = CORE + "Parameters"
    response = await hapi.post(
        f"/{resource['resourceType']}/$validate",
        params={"profile": applied},
        content=orjson.dumps(body),
        headers={"Content-Type": FHIR_JSON},
    )
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    return [
        {k: v for k, v in issue.items() if k not in ("extension", "location")} for issue in outcome["issue"]
    ]


def errors(issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in issues if i["severity"] in ("error", "fatal")]


def summary(issues: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(severity, first expression, diagnostics) of each issue: what a failing assertion should show."""
    return [(i["severity"], (i.get("expression") or [""])[0], i.get("diagnostics", "")) for i in issues]
