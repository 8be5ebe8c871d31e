"""The worker as app/worker.py composes it: the dispatcher it builds (for `safeflag dispatcher` and the
in-process one) runs the escalation of overdue acknowledgement Tasks as a timer, added there by a plain
call (notifications and safeguarding do not import each other). Both databases, at fixed instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from app.context import AppContext
from app.worker import make_dispatcher
from tests.notify.ed_data import CLOCK, DNW
from tests.notify.test_due_times import _child, _task


async def test_the_workers_dispatcher_escalates_overdue_tasks_once(api: httpx.AsyncClient,
                                                                    notify_ctx: AppContext) -> None:
    CLOCK.reset(datetime(2026, 3, 4, 10, 0, tzinfo=UTC))  # Wednesday, no bank holiday near
    await _child(api)
    task = await _task(api, disposition=DNW[0])
    due = datetime.fromisoformat(task["restriction"]["period"]["end"])
    dispatcher = make_dispatcher(notify_ctx)
    try:
        CLOCK.reset(due - timedelta(seconds=1))
        assert await dispatcher.run_timers(force=True) == 0  # not yet due
        CLOCK.reset(due + timedelta(seconds=1))
        assert await dispatcher.run_timers(force=True) == 1
        assert await dispatcher.run_timers(force=True) == 0  # once only
    finally:
        await dispatcher.close()
    escalated = (await api.get(f"/fhir/Task/{task['id']}")).json()
    assert escalated["businessStatus"]["coding"][0]["code"] == "escalated"
    assert escalated["owner"] == {"reference": "PractitionerRole/lead-1"}  # the child's CareTeam lead
