"""A signed token whose claims carry a control character (U+0000 NUL, a newline, ESC...) is refused at
verification (401, SF-0811, naming the claim), on both databases: such a claim would otherwise reach
the AuditEvent of the access (PostgreSQL's JSONB refuses U+0000: a 500 instead of an audited access)
and the logs (a forged line). The refusal stores nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.context import AppContext
from app.storage.audit_tables import audit_event
from app.storage.tables import resource
from tests.security.tokens_fixture import Mint

ORG = "Organization/ed"


def refused(claim: str) -> dict[str, Any]:
    why = f"claim '{claim}' contains a control character"
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "login", "diagnostics": f"SF-0811: Invalid bearer token: {why}"}]}


async def _count(ctx: AppContext, rtype: str) -> int:
    """Resources of `rtype` stored; AuditEvents: rows of the audit trail."""
    async with ctx.sessionmaker() as s:
        if rtype == "AuditEvent":
            return int((await s.scalar(select(func.count()).select_from(audit_event))) or 0)
        return int((await s.scalar(select(func.count()).select_from(resource).where(resource.c.res_type == rtype)))
                   or 0)


@pytest.mark.parametrize(("claim", "claims"), [
    ("sub", {"sub": "ed-epr\x00"}),
    ("org", {"org": "Organization/ed\x00north"}),
    ("fhirUser", {"practitioner": "Practitioner/p\x001"}),
    ("care_setting", {"care_setting": "310000008\x00"}),
    ("client_id", {"client_id": "epr\nforged log line"}),
    ("sub", {"sub": "ed\x1b[31mepr"}),
])
async def test_a_control_character_in_a_claim_is_refused_at_verification(
    client: httpx.AsyncClient, clean_ctx: AppContext, mint: Mint, claim: str, claims: dict[str, Any]
) -> None:
    token = mint("ed-clinician", **{"org": ORG, **claims})
    before = await _count(clean_ctx, "AuditEvent")
    headers = {"Authorization": f"Bearer {token}"}
    r = await client.get("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018", headers=headers)
    assert (r.status_code, r.json()) == (401, refused(claim))
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="safeflag", error="invalid_token", error_description="claim \'{claim}\' contains a control '
        'character"')
    encounter = {"resourceType": "Encounter", "status": "in-progress",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}}
    r = await client.post("/fhir/Encounter", json=encounter, headers=headers)
    assert (r.status_code, r.json()) == (401, refused(claim))
    assert await _count(clean_ctx, "Encounter") == 0
    assert await _count(clean_ctx, "AuditEvent") == before  # refused as any invalid token: no access began

async def test_printable_unicode_in_a_claim_is_accepted(client: httpx.AsyncClient, mint: Mint) -> None:
    token = mint("ed-clinician", org=ORG, sub="Zoë O'Brien — ED")
    r = await client.get("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018",
                         headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
