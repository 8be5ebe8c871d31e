"""Acknowledgement Tasks: one per notice, owned by the recipient, due in 1 working day (urgent) or
5 (routine), escalated ONCE to the team's safeguarding lead when overdue (docs/api/ed-attendance.md).

Working days are counted on the Europe/London calendar, whatever the server's time zone: they skip
Saturdays, Sundays and the bank holidays of one UK region (England and Wales by default; Scotland or
Northern Ireland by `SAFEFLAG_HOLIDAYS_REGION`), from the `holidays` package. A notice is due at the
same London wall-clock time on the Nth working day after the London day it was sent (so a notice sent
at 23:30 UTC on a summer Friday, 00:30 on Saturday in London, is due on Monday at 00:30 BST).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from app.config import HolidaysRegion
from app.fhir.search.dates import parse_range
from app.stored import format_instant
from app.vocabulary import TASK_CODE as TASK_CODES
from app.vocabulary import TaskCode

ESCALATED = {"coding": [{"system": TASK_CODES, "code": TaskCode.ESCALATED,
                         "display": "Escalated to safeguarding lead"}]}
OPEN_STATUSES = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")


LONDON = ZoneInfo("Europe/London")
DEFAULT_REGION: HolidaysRegion = "england-and-wales"
_SUBDIVISIONS = {"england-and-wales": "ENG", "scotland": "SCT", "northern-ireland": "NIR"}


@cache
def bank_holidays(region: HolidaysRegion) -> holidays.HolidayBase:
    """The region's bank holidays (the package fills in each year when first asked about it)."""
    return holidays.country_holidays("GB", subdiv=_SUBDIVISIONS[region])


def is_working_day(day: date, region: HolidaysRegion = DEFAULT_REGION) -> bool:
    return day.weekday() < 5 and day not in bank_holidays(region)


def add_working_days(start: datetime, days: int, region: HolidaysRegion = DEFAULT_REGION) -> datetime:
    """`start` moved to the same London wall-clock time on the `days`-th working day after its London
    day. `start` is UTC, naive or aware; the answer is UTC of the same kind."""
    if days == 0:
        return start
    local = (start if start.tzinfo else start.replace(tzinfo=UTC)).astimezone(LONDON)
    day, added = local.date(), 0
    while added < days:
        day += timedelta(days=1)
        added += is_working_day(day, region)
    # never a changeover day (always a Sunday), so the wall-clock time exists exactly once
    due = datetime.combine(day, local.timetz()).astimezone(UTC)
    return due if start.tzinfo else due.replace(tzinfo=None)


def due_time(sent: datetime, priority: str, region: HolidaysRegion = DEFAULT_REGION) -> datetime:
    return add_working_days(sent, 1 if priority == "urgent" else 5, region)


def acknowledgement_task(
    *, communication_id: str, child: dict[str, Any] | None, owner: dict[str, Any] | None, priority: str,
    sent: datetime, requester: dict[str, Any] | None, region: HolidaysRegion = DEFAULT_REGION,
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": priority,
        "code": {"coding": [{"system": TASK_CODES, "code": TaskCode.ACKNOWLEDGE, "display": "Acknowledge notice"}]},
        "focus": {"reference": f"Communication/{communication_id}"},
        "authoredOn": format_instant(sent),
        "restriction": {"period": {"end": format_instant(due_time(sent, priority, region))}},
    }
    if child:
        task["for"] = child
    if owner:
        task["owner"] = owner
    if requester:
        task["requester"] = requester
    return task


def due_of(task: dict[str, Any]) -> str | None:
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    return end if isinstance(end, str) else None


def due_at(task: dict[str, Any]) -> datetime | None:
    """The moment (naive UTC) after which the Task is overdue: the end of `restriction.period.end` at
    its precision (a date-only due time lasts the whole day)."""
    end = due_of(task)
    return _end_of(end) if end else None


@lru_cache(maxsize=4096)
def _end_of(end: str) -> datetime | None:
    """The end of a due time at its precision. Cached: every view of a list reads the same notices' due
    times, and lists and the escalation timer ask for each more than once."""
    found = parse_range(end)
    return found[1] if found else None


def is_overdue(task: dict[str, Any], now: datetime) -> bool:
    """Open, due time passed (`now` naive UTC)."""
    due = due_at(task)
    return task.get("status") in OPEN_STATUSES and due is not None and due <= now


def is_escalated(task: dict[str, Any]) -> bool:
    status = task.get("businessStatus") or {}
    return any(c.get("code") == TaskCode.ESCALATED for c in status.get("coding") or [])
