"""Acknowledgement Tasks: one per notice, owned by the recipient, due in 1 working day (urgent) or
5 (routine), escalated ONCE to the team's safeguarding lead when overdue (contract section 5).

Working days skip Saturdays and Sundays; bank holidays are not modelled.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.fhir.search.dates import parse_range
from app.storage.repository import format_instant

TASK_CODES = "https://fhir.safeflag.example/CodeSystem/safeguarding-task"
ESCALATED = {"coding": [{"system": TASK_CODES, "code": "escalated", "display": "Escalated to safeguarding lead"}]}
OPEN_STATUSES = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")


def add_working_days(start: datetime, days: int) -> datetime:
    current = start
    added = 0
    while added < days:
        current += timedelta(days=1)
        if current.weekday() < 5:
            added += 1
    return current


def due_time(sent: datetime, priority: str) -> datetime:
    return add_working_days(sent, 1 if priority == "urgent" else 5)


def acknowledgement_task(
    *, communication_id: str, child: dict[str, Any] | None, owner: dict[str, Any] | None, priority: str,
    sent: datetime, requester: dict[str, Any] | None,
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": priority,
        "code": {"coding": [{"system": TASK_CODES, "code": "acknowledge", "display": "Acknowledge notice"}]},
        "focus": {"reference": f"Communication/{communication_id}"},
        "authoredOn": format_instant(sent),
        "restriction": {"period": {"end": format_instant(due_time(sent, priority))}},
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
    found = parse_range(end) if end else None
    return found[1] if found else None


def is_overdue(task: dict[str, Any], now: datetime) -> bool:
    """Open, due time passed (`now` naive UTC)."""
    due = due_at(task)
    return task.get("status") in OPEN_STATUSES and due is not None and due <= now


def is_escalated(task: dict[str, Any]) -> bool:
    status = task.get("businessStatus") or {}
    return any(c.get("code") == "escalated" for c in status.get("coding") or [])
