"""Open and overdue acknowledgement Tasks per team (the acknowledgement Tasks of tasks.py), for
`/metrics`: `safeguarding_tasks_open` and `safeguarding_tasks_overdue`, labelled `organization` (the
owner's team: the owning Organization, a PractitionerRole's organisation, or a Practitioner's first
role's organisation; `unassigned` for unrouted notices' Tasks, `unknown` when the team cannot be told).
Computed when Prometheus scrapes, from the same search definitions the API uses (the per-owner figure
is also `GET /fhir/Task?owner=...&status=requested&_summary=count`).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from app.safeguarding.lookup import Lookup
from app.safeguarding.tasks import OPEN_STATUSES, is_overdue
from app.storage.repository import utc_ms
from app.vocabulary import TASK_CODE as TASK_CODES
from app.vocabulary import TaskCode

PAGE = 1000
_GAUGES: WeakKeyDictionary[CollectorRegistry, tuple[Gauge, Gauge]] = WeakKeyDictionary()


async def task_counts(session: AsyncSession, base: str, now: datetime) -> dict[str, tuple[int, int]]:
    """organisation label -> (open, overdue) over every open acknowledgement Task."""
    lookup = Lookup(session, base)
    query = [("code", f"{TASK_CODES}|{TaskCode.ACKNOWLEDGE}"), ("status", ",".join(OPEN_STATUSES)), ("_sort", "_id")]
    now = utc_ms(now)
    teams: dict[str, str] = {}
    open_, overdue = Counter[str](), Counter[str]()
    offset = 0
    while True:
        page = await lookup.search("Task", [*query, ("_offset", str(offset))], count=PAGE)
        for task in page:
            owner = task.content.get("owner")
            key = (owner or {}).get("reference", "") if isinstance(owner, dict) else ""
            if key not in teams:
                teams[key] = (await lookup.organization_of(owner) or "unknown") if key else "unassigned"
            open_[teams[key]] += 1
            overdue[teams[key]] += is_overdue(task.content, now)
        offset += len(page)
        if len(page) < PAGE:
            return {org: (open_[org], overdue[org]) for org in open_}


def _gauges(registry: CollectorRegistry) -> tuple[Gauge, Gauge]:
    if registry not in _GAUGES:
        _GAUGES[registry] = (
            Gauge("safeguarding_tasks_open", "Open acknowledgement Tasks by owner organisation", ["organization"],
                  registry=registry),
            Gauge("safeguarding_tasks_overdue", "Open acknowledgement Tasks past their due time by owner organisation",
                  ["organization"], registry=registry),
        )
    return _GAUGES[registry]


async def observe(registry: CollectorRegistry, session: AsyncSession, base: str, now: datetime) -> None:
    """Set both gauges from the database (teams with no open Task drop out of the series)."""
    counts = await task_counts(session, base, now)
    open_gauge, overdue_gauge = _gauges(registry)
    open_gauge.clear()
    overdue_gauge.clear()
    for org, (n_open, n_overdue) in sorted(counts.items()):
        open_gauge.labels(org).set(n_open)
        overdue_gauge.labels(org).set(n_overdue)
