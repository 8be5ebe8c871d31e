"""Builders shared by the search API tests (no tests here). The resources follow the domain rules
(contract sections 4-5: coded Flag categories with their SNOMED codes, one active flag per category,
subject and author; test-range NHS numbers), so they stay valid as business rules arrive."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.conftest import FHIR

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED = "http://snomed.info/sct"
FLAG_CATEGORY = "https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category"
COMM_CATEGORY = "https://fhir.safeflag.example/CodeSystem/safeguarding-communication-category"
STATUS_REASON = "https://fhir.safeflag.example/StructureDefinition/status-reason"
FLAG_CODES = {
    "child-protection-plan": "342191000000101",
    "looked-after-child": "764841000000100",
    "fgm": "902961000000107",
    "risk-to-self": "886941000000103",
    "risk-to-others": "886951000000100",
    "risk-from-others": "1064461000000103",
}


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(f"/fhir/{body['resourceType']}", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def put(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def patient(nhs: str, family: str = "Smith", given: str = "Amy", birth: str = "2020-02-03", **extra: Any) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": family, "given": [given]}],
        "birthDate": birth,
        **extra,
    }


def organization(name: str, ods: str, phone: str = "0113 000 0000") -> dict:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": ODS, "value": ods}],
        "name": name,
        "telecom": [{"system": "phone", "value": phone}],
    }


def flag(subject: dict[str, Any] | str, author: str, category: str = "child-protection-plan",
         start: str = "2026-01-01", end: str | None = None) -> dict:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "Flag",
        "status": "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": SNOMED, "code": FLAG_CODES[category]}]},
        "subject": {"reference": subject} if isinstance(subject, str) else subject,
        "period": period,
        "author": {"reference": author},
    }


async def end_flag(client: httpx.AsyncClient, stored: dict[str, Any], end: str = "2026-01-04") -> dict:
    """Flags are created active; ending one is a status change with a reason (contract section 5)."""
    reason = {"url": STATUS_REASON, "valueCodeableConcept": {"coding": [
        {"system": "https://fhir.safeflag.example/CodeSystem/status-reason", "code": "plan-ended"}]}}
    body = {**stored, "status": "inactive", "extension": [reason],
            "period": {**stored["period"], "end": end}}
    body.pop("meta")
    return await put(client, body)


def communication(subject: str, recipient: str, category: str = "ed-attendance", sent: str | None = None,
                  **extra: Any) -> dict:
    return {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": category}]}],
        "subject": {"reference": subject},
        "recipient": [{"reference": recipient}],
        **({"sent": sent} if sent else {}),
        **extra,
    }


async def search(client: httpx.AsyncClient, url: str, **kw: Any) -> dict[str, Any]:
    r = await client.get(url, **kw)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def ids(client: httpx.AsyncClient, url: str) -> list[str]:
    """Ids of the `match` entries of one search page, in order."""
    bundle = await search(client, url)
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def entries(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    """(mode, Type/id) of each entry, in order."""
    return [
        (e["search"]["mode"], f"{e['resource']['resourceType']}/{e['resource'].get('id', '')}")
        for e in bundle.get("entry", [])
    ]


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def local(url: str) -> str:
    """A link under SAFEFLAG_BASE_URL as a path the test client can follow."""
    assert url.startswith(FHIR + "/"), url
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"
