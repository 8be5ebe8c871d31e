"""Acknowledgement due times and escalation through the API on both databases, at fixed instants
(ed_data.CLOCK reset to each): every day of the week, a bank-holiday Monday, the region setting and
the spring clock change. The calendar itself is tested in tests/unit/test_due_times.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.context import AppContext
from app.safeguarding.escalation import escalate_overdue
from tests.notify.ed_data import (
    CLOCK,
    DNW,
    born,
    borough,
    by_ref,
    care_team,
    child,
    encounter,
    post,
    put,
    search,
)
from tests.unit.test_due_times import WEEK


async def _child(api: httpx.AsyncClient) -> None:
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(2)))
    await put(api, "CareTeam", "ct1", care_team("Patient/c1", ("health-visitor", "PractitionerRole/hv-1"),
                                                ("safeguarding-lead", "PractitionerRole/lead-1")))


async def _task(api: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    enc = await post(api, encounter(by_ref("c1"), "Organization/ed", **kw))
    comm = (await search(api, "Communication", encounter=f"Encounter/{enc['id']}"))[0]
    task = (await search(api, "Task", focus=f"Communication/{comm['id']}"))[0]
    assert task["authoredOn"] == comm["sent"]
    return task


def _due_on(task: dict[str, Any], day: str) -> None:
    """Due on `day` at the very instant (to the millisecond) it was sent: GMT, so UTC = London time."""
    assert task["restriction"]["period"]["end"] == day + task["authoredOn"][10:], (task["authoredOn"], day)


@pytest.mark.parametrize(("sent", "urgent", "routine"), [tuple(t[:10] for t in case) for case in WEEK])  # Mon-Sun
async def test_due_time_each_day_of_the_week(api: httpx.AsyncClient, sent: str, urgent: str,
                                             routine: str) -> None:
    CLOCK.reset(datetime.fromisoformat(sent + "T10:00:00+00:00"))
    await _child(api)
    task = await _task(api)
    assert task["authoredOn"].startswith(sent + "T10:00:") and task["priority"] == "routine"
    _due_on(task, routine)
    task = await _task(api, disposition=DNW[0])  # did not wait: urgent
    assert task["priority"] == "urgent"
    _due_on(task, urgent)


async def test_bank_holiday_monday_neither_due_nor_escalated(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    # Friday 22 May 2026, 15:30 UTC (16:30 BST): Monday 25 May is the spring bank holiday
    CLOCK.reset(datetime(2026, 5, 22, 15, 30, tzinfo=UTC))
    await _child(api)
    task = await _task(api, disposition=DNW[0])
    due = datetime.fromisoformat(task["restriction"]["period"]["end"])
    assert due.date().isoformat() == "2026-05-26"
    assert due - datetime.fromisoformat(task["authoredOn"]) == timedelta(days=4)
    assert await escalate_overdue(notify_ctx, datetime(2026, 5, 25, 23, 59, tzinfo=UTC)) == 0  # all the holiday
    assert await escalate_overdue(notify_ctx, due - timedelta(seconds=1)) == 0
    assert await escalate_overdue(notify_ctx, due + timedelta(seconds=1)) == 1
    assert (await api.get(f"/fhir/Task/{task['id']}")).json()["businessStatus"]["coding"][0]["code"] == "escalated"


async def test_region_setting_scotland(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    # Thursday 2 April 2026, 09:00 UTC (10:00 BST): Good Friday is a holiday everywhere in the UK,
    # Easter Monday (6 April) only outside Scotland
    CLOCK.reset(datetime(2026, 4, 2, 9, 0, tzinfo=UTC))
    await _child(api)
    assert (await _task(api, disposition=DNW[0]))["restriction"]["period"]["end"].startswith("2026-04-07T09:00:")
    notify_ctx.settings.holidays_region = "scotland"
    try:
        assert (await _task(api, disposition=DNW[0]))["restriction"]["period"]["end"].startswith("2026-04-06T09:00:")
    finally:
        notify_ctx.settings.holidays_region = "england-and-wales"


async def test_escalates_23_hours_later_across_the_spring_change(api: httpx.AsyncClient,
                                                                  notify_ctx: AppContext) -> None:
    # Sunday 29 March 2026 00:30 GMT; clocks go forward at 01:00 GMT: the next working day's 00:30 is
    # Monday 00:30 BST = Sunday 23:30 UTC, 23 hours after it was sent
    CLOCK.reset(datetime(2026, 3, 29, 0, 30, tzinfo=UTC))
    await _child(api)
    task = await _task(api, disposition=DNW[0])
    due = datetime.fromisoformat(task["restriction"]["period"]["end"])
    assert due - datetime.fromisoformat(task["authoredOn"]) == timedelta(hours=23)
    assert await escalate_overdue(notify_ctx, due - timedelta(seconds=1)) == 0
    assert await escalate_overdue(notify_ctx, due + timedelta(seconds=1)) == 1  # not an hour late
