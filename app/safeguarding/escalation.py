"""Escalation of overdue acknowledgement Tasks, run by the dispatcher's timer:
once per Task, an `escalation` Communication to the team's safeguarding lead and the Task reassigned.

The lead is the `safeguarding-lead` participant of the child's active CareTeam (referenced as the
CareTeam references it); else a PractitionerRole coded `safeguarding-lead` in the owner's organisation;
else the owner's organisation itself. A Task with no owner (an unrouted notice) escalates to the
child's CareTeam lead when there is one, and otherwise only gets the escalation notice with no recipient.

"Once" holds with any number of dispatcher processes: each Task is escalated in its own transaction
that re-reads it, and the Task update is version-checked, so a second escalator's transaction fails
with a conflict and rolls back its Communication too.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from app.errors import Conflict, ServerWriteInvalid
from app.ports import UnitOfWork
from app.safeguarding.lookup import Lookup
from app.safeguarding.routing import care_team_member, lead_of
from app.safeguarding.tasks import ESCALATED, OPEN_STATUSES, due_of, is_escalated, is_overdue
from app.storage.repository import utc_ms
from app.stored import StoredResource, format_instant
from app.vocabulary import COMMUNICATION_CATEGORY as COMM_CATEGORY
from app.vocabulary import TASK_CODE as TASK_CODES
from app.vocabulary import CareTeamRole, CommunicationCategory, TaskCode

log = logging.getLogger("safeflag.escalation")

PAGE = 200
# Nothing is due sooner than one working day after it was sent (tasks.py): the same London wall-clock
# time a day or more later, at least 23 hours across the spring clock change. So only Tasks authored
# at least 23 hours ago can be overdue: that bound keeps the scan to the candidates.
SHORTEST_DUE = timedelta(hours=23)


async def lead_for(lookup: Lookup, task: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    child = await lookup.resolve_subject(task.get("for"))
    if child is not None:
        member = await care_team_member(lookup, child, CareTeamRole.SAFEGUARDING_LEAD, now.date())
        if member:
            return member
    org = await lookup.organization_of(task.get("owner"))
    if org:
        return await lead_of(lookup, org) or {"reference": org}
    return None


def _escalation(task: StoredResource, lead: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": CommunicationCategory.ESCALATION}]}],
        "priority": "urgent",
        "about": [{"reference": f"Task/{task.id}"}, *([task.content["focus"]] if task.content.get("focus") else [])],
        "sent": format_instant(now),
        "payload": [{"contentString": f"Acknowledgement overdue since {due_of(task.content)}"}],
    }
    if task.content.get("for"):
        comm["subject"] = task.content["for"]
    if lead:
        comm["recipient"] = [lead]
    return comm


async def overdue_candidates(ctx: UnitOfWork, now: datetime) -> list[str]:
    """Ids of open, not yet escalated acknowledgement Tasks authored at least a day before `now`."""
    query = [
        ("code", f"{TASK_CODES}|{TaskCode.ACKNOWLEDGE}"),
        ("status", ",".join(OPEN_STATUSES)),
        ("business-status:not", f"{TASK_CODES}|{TaskCode.ESCALATED}"),
        ("authored-on", "le" + format_instant(now - SHORTEST_DUE)),
        ("_sort", "authored-on,_id"),
    ]
    ids: list[str] = []
    async with ctx.unit_of_work() as svc:
        lookup = Lookup(svc.session, ctx.settings.fhir_base)
        while True:
            page = await lookup.search("Task", [*query, ("_offset", str(len(ids)))], count=PAGE)
            ids += [t.id for t in page]
            if len(page) < PAGE:
                return ids


async def escalate_one(ctx: UnitOfWork, task_id: str, now: datetime) -> bool:
    """Escalate one Task if it is (still) overdue and not escalated; its own transaction."""
    async with ctx.unit_of_work() as svc:
        task = await svc.repo.get_for_write("Task", task_id)  # an acknowledgement under way finishes first
        if task is None or task.deleted or is_escalated(task.content) or not is_overdue(task.content, now):
            return False
        lookup = Lookup(svc.session, ctx.settings.fhir_base)
        lead = await lead_for(lookup, task.content, now)
        await svc.repo.create("Communication", _escalation(task, lead, now))
        updated = dict(task.content)
        updated["businessStatus"] = ESCALATED
        if lead:
            updated["owner"] = lead
        updated["note"] = [*task.content.get("note", []),
                           {"time": format_instant(now), "text": "Escalated to the safeguarding lead: acknowledgement overdue"}]
        await svc.repo.update(task, updated)
    return True


async def escalate_overdue(ctx: UnitOfWork, now: datetime) -> int:
    """Escalate every open acknowledgement Task whose due time has passed; returns how many."""
    now = utc_ms(now)
    done = 0
    for task_id in await overdue_candidates(ctx, now):
        try:
            done += await escalate_one(ctx, task_id, now)
        except Conflict:  # changed meanwhile (acknowledged, or escalated by another dispatcher): re-checked next run
            log.info("escalation skipped: task changed concurrently", extra={"task": task_id})
        except ServerWriteInvalid:  # logged at ERROR (profile and issue); the other Tasks still escalate
            continue
    return done
