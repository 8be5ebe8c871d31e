"""The attendance's reason on the health visitor's notice: the ED attendance rule copies the Encounter's
`reasonCode` into the child's notice (a Communication she reads; the Encounter she may not), and never
from an Encounter labelled restricted or sensitive (both databases)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.context import AppContext
from app.demo import borough as b
from app.web import notices
from tests.conftest import StepClock
from tests.web.pages_data import HV, RESTRICTED, SEXUAL_HEALTH, ed, seed

Auth = Any
CONTUSION = [{"coding": [{"system": b.SNOMED, "code": "125667009", "display": "Contusion"}], "text": "Bruised arm"}]
SEX = {"system": b.ACT_CODE, "code": "SEX"}


def hv(auth: Auth) -> dict[str, str]:
    return dict(auth("health-visitor", org=b.ZERO19, practitioner=b.HV))


async def notice_of(client: httpx.AsyncClient, auth: Auth, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    """POST an attendance with the reason (and `extra`); the notice it raised, as the health visitor reads it."""
    r = await client.post("/fhir/Encounter", headers=headers,
                          json={**b.attendance("2026-01-05T08:30:00Z"), "reasonCode": CONTUSION, **extra})
    assert r.status_code == 201, r.text
    found = (await client.get(f"/fhir/Communication?encounter=Encounter/{r.json()['id']}", headers=hv(auth))).json()
    [entry] = [e for e in found["entry"] if e["search"]["mode"] == "match"]
    comm: dict[str, Any] = entry["resource"]
    return comm


async def test_the_notice_carries_the_reason_she_may_not_read_in_the_encounter(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await seed(client, clock.now().date())
    comm = await notice_of(client, auth, ed(auth))
    assert comm["reasonCode"] == CONTUSION
    encounter = await client.get(f"/fhir/{comm['encounter']['reference']}", headers=hv(auth))
    assert encounter.status_code == 404  # the ED's record stays the ED's
    async with clean_ctx.unit_of_work(HV) as svc:
        [row] = (await notices.open_notices(svc, notices.own_refs(svc), clock.now())).rows
    assert (row.reason, row.attended, row.place) == (
        "Bruised arm", "5 January 2026, 08:30 GMT", "Demo General Hospital Emergency Department")


@pytest.mark.parametrize("labels", [[RESTRICTED], [RESTRICTED, SEX], [SEX]], ids=["R", "R+SEX", "SEX"])
async def test_a_labelled_encounters_reason_never_reaches_the_notice(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth, labels: list[dict[str, str]]
) -> None:
    await seed(client, clock.now().date())
    comm = await notice_of(client, auth, ed(auth), meta={"security": labels})
    assert "reasonCode" not in comm and "Contusion" not in str(comm) and "Bruised" not in str(comm)
    async with clean_ctx.unit_of_work(HV) as svc:
        [row] = (await notices.open_notices(svc, notices.own_refs(svc), clock.now())).rows
    assert row.reason == ""


async def test_a_sexual_health_attendance_keeps_its_reason(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    """A sexual-health service's writes are labelled R + SEX by default: its attendance's notice says
    that the child attended, never why."""
    await seed(client, clock.now().date())
    sexual_health = dict(auth("sexual-health-clinician", org=SEXUAL_HEALTH))
    comm = await notice_of(client, auth, sexual_health, serviceProvider={"reference": SEXUAL_HEALTH})
    assert "reasonCode" not in comm and "Bruised" not in str(comm)
