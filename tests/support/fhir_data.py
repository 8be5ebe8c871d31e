"""Small valid resources and OperationOutcome helpers shared by the interaction tests
(test-range NHS numbers only)."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import orjson

from tests.conftest import FHIR

NHS = "https://fhir.nhs.uk/Id/nhs-number"
CATEGORY = "https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category"
SNOMED = "http://snomed.info/sct"
UUID4_URN = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def patient(nhs: str = "9990000018", family: str = "Smith", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": family, "given": ["Amy"]}],
        "birthDate": "2020-02-03",
        **extra,
    }


def organization(name: str = "Borough Children's Services") -> dict[str, Any]:
    return {"resourceType": "Organization", "name": name}


def flag(subject: str, author: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "status": "active",
        "category": [{"coding": [{"system": CATEGORY, "code": "child-protection-plan"}]}],
        "code": {"coding": [{"system": SNOMED, "code": "342191000000101"}]},
        "subject": {"reference": subject},
        "period": {"start": "2026-01-01"},
        "author": {"reference": author},
    }


def nhs_query(nhs: str) -> str:
    return f"identifier={NHS}|{nhs}"


def outcome(
    code: str, diagnostics: str, expression: list[str] | None = None, severity: str = "error"
) -> dict[str, Any]:
    """A one-issue OperationOutcome exactly as the server renders it."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression is not None:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def unidentified(entry: dict[str, Any]) -> dict[str, Any]:
    """A searchset `outcome` entry without its one-off identity, once that is checked: `fullUrl` is a
    `urn:uuid:` with a fresh UUID and the OperationOutcome's `id` is that UUID (app/fhir/bundles.py
    outcome_entry). Compare what is returned exactly."""
    full_url = entry["fullUrl"]
    assert UUID4_URN.fullmatch(full_url), full_url
    resource = dict(entry["resource"])
    assert resource.pop("id") == full_url.removeprefix("urn:uuid:")
    return {**{k: v for k, v in entry.items() if k != "fullUrl"}, "resource": resource}


def location(rtype: str, rid: str, version: int) -> str:
    return f"{FHIR}/{rtype}/{rid}/_history/{version}"


def instant(second: int) -> str:
    """The StepClock's n-th tick as FHIR instant (2026-01-05T09:00:0n)."""
    minutes, seconds = divmod(second, 60)
    return f"2026-01-05T09:{minutes:02d}:{seconds:02d}.000+00:00"


def created_response(rtype: str, rid: str, second: int) -> dict[str, Any]:
    """`Bundle.entry.response` of a create (version 1) at the clock's n-th tick."""
    return {
        "status": "201 Created",
        "location": location(rtype, rid, 1),
        "etag": 'W/"1"',
        "lastModified": instant(second),
    }


def binary_patch(document: Any, content_type: str = "application/json-patch+json") -> dict[str, Any]:
    """A PATCH entry's resource: the patch document as a Binary (https://hl7.org/fhir/R4/http.html#transaction)."""
    return {
        "resourceType": "Binary",
        "contentType": content_type,
        "data": base64.b64encode(orjson.dumps(document)).decode(),
    }


def tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def req(method: str, url: str, resource: dict[str, Any] | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        entry["resource"] = resource
    return entry


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    r = await client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    rid: str = r.json()["id"]
    return rid


async def count(client: httpx.AsyncClient, rtype: str) -> int:
    total: int = (await client.get(f"/fhir/{rtype}?_summary=count")).json()["total"]
    return total
