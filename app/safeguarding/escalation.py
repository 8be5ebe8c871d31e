"""Escalation of overdue acknowledgement Tasks, run by the dispatcher's timer (contract section 5):
once per Task, an `escalation` Communication to the team's safeguarding lead and the Task reassigned.

The lead is the `safeguarding-lead` participant of the child's active CareTeam; else a PractitionerRole
coded `safeguarding-lead` in the owner's organisation; else the owner's organisation itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.context import AppContext
from app.safeguarding.lookup import Lookup
from app.safeguarding.routing import CARE_TEAM_ROLE, care_team_member
from app.safeguarding.rules import COMM_CATEGORY
from app.safeguarding.tasks import ESCALATED, OPEN_STATUSES, TASK_CODES, due_of, is_escalated
from app.storage.repository import StoredResource, format_instant

BATCH = 200


async def _owner_org(lookup: Lookup, owner: dict[str, Any] | None) -> str | None:
    ref = (owner or {}).get("reference", "")
    if ref.startswith("Organization/"):
        return str(ref)
    if ref.startswith("PractitionerRole/"):
        role = await lookup.get(ref)
        org = ((role.content if role else {}).get("organization") or {}).get("reference")
        return str(org) if org else None
    return None


async def lead_for(lookup: Lookup, task: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    child = await lookup.resolve_subject(task.get("for"))
    if child is not None:
        member = await care_team_member(lookup, child, "safeguarding-lead", now.date())
        if member:
            return member
    org = await _owner_org(lookup, task.get("owner"))
    if org:
        roles = await lookup.search("PractitionerRole", [("organization", org), ("role", f"{CARE_TEAM_ROLE}|safeguarding-lead"),
                                                         ("_sort", "_id")], count=1)
        if roles:
            return {"reference": f"PractitionerRole/{roles[0].id}"}
        return {"reference": org}
    return None


def _escalation(task: StoredResource, lead: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": "escalation"}]}],
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


async def escalate_overdue(ctx: AppContext, now: datetime) -> int:
    """Escalate every open acknowledgement Task whose due time has passed; returns how many."""
    done = 0
    async with ctx.unit_of_work() as svc:
        lookup = Lookup(svc.session, ctx.settings.fhir_base)
        tasks = await lookup.search(
            "Task", [("code", f"{TASK_CODES}|acknowledge"), ("status", ",".join(OPEN_STATUSES))], count=BATCH
        )
        stamp = format_instant(now)
        for task in tasks:
            due = due_of(task.content)
            if not due or due > stamp or is_escalated(task.content):
                continue
            lead = await lead_for(lookup, task.content, now)
            await svc.repo.create("Communication", _escalation(task, lead, now))
            updated = dict(task.content)
            updated["businessStatus"] = ESCALATED
            if lead:
                updated["owner"] = lead
            updated["note"] = [*task.content.get("note", []),
                               {"time": stamp, "text": "Escalated to the safeguarding lead: acknowledgement overdue"}]
            await svc.repo.update(task, updated)
            done += 1
    return done
