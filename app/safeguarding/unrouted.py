"""An ED notice routed to no one is never silent.

A notice is unrouted when routing (routing.py) finds no health visitor or school nurse, no managing
organisation and no duty team for it: a notice that reaches a team is routed. Its reason code
(`routing.UNROUTED_REASONS`) says why: `patient-unknown`, `patient-ambiguous` or `no-care-team`.
At once, in the same transaction as the attendance:

- the notice and its acknowledgement Task go to the safeguarding lead of the ED's own organisation
  (`Encounter.serviceProvider`, else the organisation whose token wrote the Encounter): its
  PractitionerRole coded `care-team-role|safeguarding-lead` (the first by id), so the lead's
  `ed-attendance` subscriptions fire; with no such lead they have no recipient and no owner, and
  `Task?owner:missing=true&code=acknowledge` lists them;
- the notice carries the reason as a `meta.tag` (REASON_SYSTEM): the governance report's `ed-unrouted`
  counts it wherever it went, and links to that list;
- the ED system is told in the answer: a warning issue (SF-0975; in the OperationOutcome of
  `Prefer: return=OperationOutcome`, and in a Bundle entry's `response.outcome`) and the header
  `X-SafeFlag-Unrouted: <reason>` (several reasons comma-separated).
Once the write is committed: a WARNING log line (request id, reason, notice, Task, where it went;
never the NHS number) and `safeflag_ed_unrouted_total{reason}` in `/metrics`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from app.errors import Issue
from app.observability import request_id_var
from app.ports import Notes
from app.safeguarding.lookup import Lookup
from app.safeguarding.routing import Route, lead_of
from app.stored import StoredResource
from app.vocabulary import UNROUTED_REASON as REASON_SYSTEM
from app.vocabulary import TaskCode, UnroutedReason

HEADER = "X-SafeFlag-Unrouted"
UNROUTED_LIST = f"Task?owner:missing=true&code={TaskCode.ACKNOWLEDGE}"
VIA_LEAD = "ed-safeguarding-lead"
MSG_ID = "SF-0975"

log = logging.getLogger("safeflag.unrouted")

_WHY = {
    UnroutedReason.PATIENT_UNKNOWN: "no Patient on file is the attendance's subject (NHS number not known here)",
    UnroutedReason.PATIENT_AMBIGUOUS: "several Patients on file hold the subject's NHS number",
    UnroutedReason.NO_CARE_TEAM: "the child has no health visitor or school nurse in an active CareTeam and no managing "
                  "organisation",
}


@dataclass(frozen=True)
class Sent:
    """A notice written for an attendance: its category, Communication, Task and route."""

    category: str
    communication: str
    task: str
    route: Route


def is_unrouted(notice: dict[str, Any]) -> bool:
    """A notice routed to no one: it carries an unrouted reason, or (stored before reasons were) has
    no recipient."""
    tags = (notice.get("meta") or {}).get("tag") or []
    return not notice.get("recipient") or any(t.get("system") == REASON_SYSTEM for t in tags)


def ed_organization(encounter: StoredResource) -> str | None:
    """The ED's own organisation: the Encounter's serviceProvider, else the writer's organisation."""
    ref = (encounter.content.get("serviceProvider") or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("Organization/"):
        return ref
    return encounter.created_by_org


async def to_ed_lead(lookup: Lookup, route: Route, ed_org: str | None) -> Route:
    """An unrouted notice goes to the safeguarding lead of the ED's organisation, when there is one."""
    if route.reason is None or not ed_org:
        return route
    lead = await lead_of(lookup, ed_org)
    return replace(route, recipient=lead, via=VIA_LEAD) if lead else route


def where(route: Route, base: str) -> str:
    if route.recipient:
        return f"it went to the ED's safeguarding lead {route.recipient['reference']}"
    return f"it has no recipient and its Task no owner: see GET {base}/{UNROUTED_LIST}"


def warning(encounter: StoredResource, sent: Sent, base: str) -> Issue:
    reason = sent.route.reason or ""
    text = (f"Encounter/{encounter.id}: the {sent.category} notice {sent.communication} reached no health "
            f"visitor, school nurse or team ({reason}: {_WHY.get(reason, reason)}, and no 0-19 duty team is "
            f"on file); {where(sent.route, base)}")
    expression = () if reason == UnroutedReason.NO_CARE_TEAM else ("Encounter.subject",)
    return Issue("incomplete", text, "warning", expression, MSG_ID)


def tell(notes: Notes, encounter: StoredResource, sent: list[Sent], base: str) -> None:
    """Put the unrouted notices among the write's Notes: warning, header, then log line and metric."""
    rid = request_id_var.get()
    for one in sent:
        reason = one.route.reason
        if reason is None:
            continue
        notes.issues.append(warning(encounter, one, base))
        notes.header(HEADER, reason)
        fields: dict[str, Any] = {
            "reason": reason, "encounter": f"Encounter/{encounter.id}", "notice": one.communication,
            "task": one.task, "delivered_to": (one.route.recipient or {}).get("reference") or UNROUTED_LIST,
        }
        if rid:
            fields["request_id"] = rid

        def record(metrics: Any, fields: dict[str, Any] = fields) -> None:
            log.warning("ED notice unrouted", extra=fields)
            if metrics is not None:
                metrics.ed_unrouted.labels(fields["reason"]).inc()

        notes.committed.append(record)
