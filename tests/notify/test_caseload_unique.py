"""The caseload import and unique NHS numbers, on both databases: a child already on file is matched,
never recorded twice; and a Patient given the child's NHS number by another writer while the import
runs is never duplicated. On PostgreSQL both transactions run at once, so the import's create is
refused (409) and that child's rows become bad rows with the 409's reason while the rest of the batch
is committed; SQLite has one writer at a time, so the import starts after the other commits and
matches the child."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from sqlalchemy import text

from app.context import AppContext
from app.safeguarding.caseload import CASELOAD_SYSTEM, Report, import_rows, read_rows
from tests.notify.ed_data import borough, child, search

CSV = (
    "nhs_number,practitioner,role,team,start_date\n"
    "9990000018,PractitionerRole/hv-1,health-visitor,Organization/zero19,2025-09-01\n"
    "9990000026,PractitionerRole/hv-1,health-visitor,Organization/zero19,2025-09-01\n"
    "9990000026,PractitionerRole/lead-1,safeguarding-lead,Organization/zero19,2025-09-01\n"
)


async def _import(ctx: AppContext) -> Report:
    rows, bad = read_rows(io.StringIO(CSV))
    report = Report(rows=len(rows), bad=bad)
    await import_rows(ctx, rows, report)
    return report


async def _patients(api: httpx.AsyncClient, nhs: str) -> list[str]:
    found = await search(api, "Patient", identifier=f"https://fhir.nhs.uk/Id/nhs-number|{nhs}")
    return [p["id"] for p in found]


async def test_a_child_on_file_is_matched_not_recorded_again(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    await borough(api)
    assert (await api.put("/fhir/Patient/c1", json={**child("9990000026", "2024-05-01"), "id": "c1"})).status_code == 201
    report = await _import(notify_ctx)
    assert (report.imported, report.patients_created, report.care_teams_created, report.bad) == (3, 1, 2, [])
    assert await _patients(api, "9990000026") == ["c1"]
    assert len(await _patients(api, "9990000018")) == 1


async def _wait_for_a_blocked_writer(ctx: AppContext) -> None:
    """Until a PostgreSQL backend waits for a lock (the import's INSERT of the NHS number waits for the
    other writer's transaction); bounded by a number of looks, never by a timed assertion. On SQLite
    the import waits for the one connection, which the other writer holds: let it get that far."""
    if ctx.settings.is_sqlite:
        for _ in range(20):
            await asyncio.sleep(0)
        return
    async with ctx.engine.connect() as conn:
        for _ in range(2000):
            waiting = (await conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))).scalar_one()
            await conn.commit()
            if waiting:
                return
            await asyncio.sleep(0.005)
    pytest.fail("the import never waited for the other writer")


async def test_a_patient_created_meanwhile_makes_bad_rows_not_a_duplicate(
    api: httpx.AsyncClient, notify_ctx: AppContext
) -> None:
    await borough(api)
    async with notify_ctx.unit_of_work() as other:  # another writer records the child, not yet committed
        meanwhile = await other.create("Patient", child("9990000026", "2024-05-01"))
        assert meanwhile.stored is not None
        running = asyncio.create_task(_import(notify_ctx))
        await _wait_for_a_blocked_writer(notify_ctx)
    report = await running
    holder = meanwhile.stored.id
    assert await _patients(api, "9990000026") == [holder]
    if notify_ctx.settings.is_sqlite:
        assert (report.imported, report.patients_created, report.care_teams_created, report.bad) == (3, 1, 2, [])
        team = await search(api, "CareTeam", identifier=f"{CASELOAD_SYSTEM}|9990000026")
        assert [t["subject"] for t in team] == [{"reference": f"Patient/{holder}"}]
        return
    reason = (f"no Patient created: SF-0415: NHS number ******0026 is already held by Patient/{holder}, and a live "
              f"Patient's NHS number is unique: to reach that Patient, create with If-None-Exist: "
              f"identifier=https://fhir.nhs.uk/Id/nhs-number|<NHS number> (the existing Patient is returned), "
              f"or update Patient/{holder}")
    assert [(b.line, b.reason) for b in report.bad] == [(3, reason), (4, reason)]
    assert (report.imported, report.patients_created, report.care_teams_created) == (1, 1, 1)
    assert await search(api, "CareTeam", identifier=f"{CASELOAD_SYSTEM}|9990000026") == []
    assert len(await search(api, "CareTeam", identifier=f"{CASELOAD_SYSTEM}|9990000018")) == 1
