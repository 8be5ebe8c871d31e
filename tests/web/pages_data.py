"""The demo borough (app/demo/borough.py) for the page tests, seeded through the API, and the principals
of its people (test-range NHS numbers only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.demo import borough as b
from app.security.principal import Principal
from app.security.tokens import default_scope
from app.storage.notify_tables import outbox_event
from app.vocabulary import SNOMED

RESTRICTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
OTHER_ORG, OTHER_HV = "Organization/other-0-19", "PractitionerRole/other-hv"
SEXUAL_HEALTH = "Organization/demo-sexual-health"
BIRTH_YEAR = 2024  # the demo child's, as reference_data() makes it for a 2026 clock


def principal(role: str, org: str, fhir_user: str | None = None, care_setting: str | None = None) -> Principal:
    claims = {"sub": f"test-{role}", "role": role, "scope": default_scope(role), "org": org,
              "fhirUser": fhir_user, "care_setting": care_setting}
    return Principal.from_claims({k: v for k, v in claims.items() if v})


HV = principal("health-visitor", b.ZERO19, b.HV)
LEAD = principal("safeguarding-lead", b.ZERO19, b.LEAD)
MASH = principal("mash-practitioner", b.MASH)
OTHER = principal("health-visitor", OTHER_ORG, OTHER_HV)


async def put(client: httpx.AsyncClient, resource: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    r = await client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers)
    assert r.status_code in (200, 201), r.text


def seed_resources(today: Any) -> list[dict[str, Any]]:
    """The demo borough, another 0-19 service with its health visitor, a sexual health service and a
    second health visitor of the demo 0-19 service."""
    return [*b.reference_data(today),
            b.organization(OTHER_ORG, "Other 0-19 Service", "zero-to-nineteen-service"),
            b.practitioner_role(OTHER_HV, OTHER_ORG, "health-visitor", "Olive Other"),
            b.organization(SEXUAL_HEALTH, "Demo Sexual Health Clinic", "sexual-health-service"),
            b.practitioner_role("PractitionerRole/demo-hv2", b.ZERO19, "health-visitor", "Harriet Second")]


async def seed(client: httpx.AsyncClient, today: Any) -> None:
    for resource in seed_resources(today):
        await put(client, resource)


async def attend(client: httpx.AsyncClient, ed_auth: dict[str, str], start: str) -> str:
    r = await client.post("/fhir/Encounter", json={**b.attendance(start), "reasonCode": [
        {"coding": [{"system": SNOMED, "code": "125667009", "display": "Contusion"}]}]}, headers=ed_auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def ed(auth: Any) -> dict[str, str]:
    """An ED clinician's token (unscheduled care: reading flags raises access notifications)."""
    return dict(auth("ed-clinician", org=b.ED, practitioner=b.ED_NURSE, care_setting=b.ED_CARE_SETTING))


async def other_changes(engine: AsyncEngine, count: int) -> None:
    """`count` committed changes of Tasks a page's reader may not read (another organisation's, as far as
    her list knows: ids no search of hers finds), in the outbox as any commit puts them."""
    async with engine.begin() as conn:
        await conn.execute(insert(outbox_event), [
            {"res_type": "Task", "res_id": f"elsewhere-{i}", "version_id": 1, "action": "update",
             "occurred_at": datetime(2026, 1, 5, 9, 0)} for i in range(count)])
