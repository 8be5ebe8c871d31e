"""`GET /fhir/Patient/{id}/$safeguarding-summary`: what a record banner shows about a child
(as CP-IS shows clinicians a child's plans and the recent accesses to them), in ONE call:

- the Patient (search mode `match`), so the banner can show name, NHS number and birth date;
- the child's ACTIVE Flags (`match`) with their authors, the owning organisations and their office-hours
  and out-of-hours numbers (`include`, as `_include=Flag:author`);
- open notifications: the Communications about the child of category `ed-attendance`, `did-not-wait`,
  `think-family` and `access-notification` (not `entered-in-error`; newest `sent` first, at most 25),
  and the open `acknowledge` Tasks `for` the child (status requested..on-hold, newest first);
- the last 25 accesses to the child's record: AuditEvents with the child as entity
  (`AuditEvent?patient=Patient/id&_sort=-date&_count=25`).

The answer is a `searchset` Bundle, as Patient `$everything` answers in R4
(https://hl7.org/fhir/R4/patient-operation-everything.html): the same shape every FHIR client already
reads, with `search.mode` telling the included authors apart; `total` counts the `match` entries. "The
child" is found the way the CP-IS check finds it: by `patient:identifier=` with its NHS numbers (which
matches references to this Patient and references carrying only the NHS number), else by reference.

Access is the policy's, record by record: every section runs with the principal's search restrictions
(`Guard.restrict`), and when the child has restricted records withheld from any section one information
entry says so, as a search's does (whatever the sections' other criteria, and with no number). A
principal who may not read AuditEvents (safeguarding leads, admin, system may) sees an empty access
section, and accesses about restricted records are restricted AuditEvents (`labels.audit_restriction`).
The summary is one access, audited once as the `operation` on the Patient. Showing the active flags is a read of them: an unscheduled-care reader
raises the access notifications (`access.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.errors import Gone, NotFound
from app.fhir.bundles import full_url, outcome_entry
from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.fhir.search.params import parse_search
from app.fhir.search.results import SearchResult
from app.safeguarding.access import record_flag_access
from app.safeguarding.flag_refs import nhs_numbers_in
from app.safeguarding.tasks import OPEN_STATUSES
from app.search.executor import run_search
from app.security import audit_search
from app.security.guard import search_patients
from app.security.labels import withheld_issue
from app.security.search_scope import any_withheld, withheld_probe
from app.storage.repository import utc_ms
from app.stored import StoredResource, format_instant
from app.vocabulary import CANONICAL_BASE, CommunicationCategory, TaskCode
from app.vocabulary import COMMUNICATION_CATEGORY as COMM_CATEGORY
from app.vocabulary import TASK_CODE as TASK_CODES

if TYPE_CHECKING:
    from sqlalchemy import Select

    from app.ports import WriteContext

OPERATION = "safeguarding-summary"
OPERATION_DEFINITION = CANONICAL_BASE + "/OperationDefinition/Patient-safeguarding-summary"
NOTICE_CATEGORIES = (CommunicationCategory.ED_ATTENDANCE, CommunicationCategory.DID_NOT_WAIT,
                     CommunicationCategory.THINK_FAMILY, CommunicationCategory.ACCESS_NOTIFICATION)
RECENT = 25  # notifications and accesses shown
OPEN_LIMIT = 100  # active flags and open Tasks: all of them, in practice
OPEN_ACKNOWLEDGEMENTS = (("code", f"{TASK_CODES}|{TaskCode.ACKNOWLEDGE}"), ("status", ",".join(OPEN_STATUSES)))


def child_criterion(patient: StoredResource) -> tuple[str, str]:
    return patient_criterion(patient.content, patient.id)


def patient_criterion(content: dict[str, Any], patient_id: str) -> tuple[str, str]:
    """How the summary's sections search for the child: by her NHS numbers when she has any (a record that
    names her by identifier only is hers too), else by reference."""
    numbers = nhs_numbers_in(content)
    if numbers:
        return "patient:identifier", ",".join(f"{NHS_NUMBER_SYSTEM}|{n}" for n in numbers)
    return "patient", f"Patient/{patient_id}"


class _Sections:
    """The summary's searches for the principal, under its access restrictions; whether the child has
    records of a section's type withheld from them (search_scope.withheld_probe) is asked for every
    section at once (`withheld`: one statement), as the summary says it once."""

    def __init__(self, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.probes: list[Select[Any] | None] = []

    async def read(self, resource_type: str, query: list[tuple[str, str]]
                   ) -> tuple[list[StoredResource], list[StoredResource]]:
        """(matches, included) of one section."""
        result = await self._search(resource_type, [*query, ("_total", "none")])
        return result.matches, result.included

    async def count(self, resource_type: str, query: list[tuple[str, str]]) -> int:
        """How many records one section has, counted (`_summary=count`), not read."""
        return int((await self._search(resource_type, [*query, ("_summary", "count")])).total or 0)

    async def withheld(self) -> bool:
        ctx = self.ctx
        return ctx.principal is not None and await any_withheld(ctx.session, self.probes)

    async def _search(self, resource_type: str, query: list[tuple[str, str]]) -> SearchResult:
        ctx = self.ctx
        req = parse_search(resource_type, query, base=ctx.base, max_count=ctx.settings.max_count)
        result = await run_search(ctx.session, req, max_includes=ctx.settings.max_includes,
                                  restrict=ctx.guard.restrict())
        if ctx.principal is not None:
            self.probes.append(withheld_probe(ctx.principal, req, _patients_shown(result.matches)))
        return result


async def _accesses(ctx: WriteContext, patient_id: str) -> tuple[list[StoredResource], bool]:
    """(the last accesses to the child's record, whether some are withheld), read off the audit trail."""
    req = parse_search("AuditEvent", [("patient", f"Patient/{patient_id}"), ("_sort", "-date"),
                                      ("_count", str(RECENT)), ("_total", "none")],
                       base=ctx.base, max_count=ctx.settings.max_count)
    result = await audit_search.search(ctx.session, req, ctx.principal, base=ctx.base,
                                       max_includes=ctx.settings.max_includes, restrict=ctx.guard.restrict())
    withheld = ctx.principal is not None and await audit_search.withholds(ctx.session, ctx.principal, req,
                                                                          _patients_shown(result.matches))
    return result.matches, withheld


def _patients_shown(matches: list[StoredResource]) -> Iterator[str]:
    """The patients a section's records are about, worked out only if asked for: a search that names its
    patient (every section names the child) is never asked (its named patient is whom it is about), and a
    child's 100 open Tasks and 25 notices cost a page view 0.7 ms to go through."""
    yield from search_patients(matches)


def _entry(fhir_base: str, res: StoredResource, mode: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url(fhir_base, res.resource_type, res.id),
        "resource": res.content,
        "search": {"mode": mode},
    }


@dataclass
class Summary:
    """The summary's sections as read for the principal (`summarise`): the records shown, and whether the
    child has records withheld from any section."""

    patient: StoredResource
    flags: list[StoredResource]
    authors: list[StoredResource]  # the flags' authors (`_include=Flag:author`)
    notices: list[StoredResource]
    tasks: list[StoredResource]  # none when the open Tasks were counted, not read
    open_tasks: int  # how many open acknowledgement Tasks the child has that the principal may see
    accesses: list[StoredResource]
    withheld: bool
    now: datetime


async def summarise(ctx: WriteContext, patient_id: str, *, scheduled: bool, tasks_read: bool = True,
                    accesses: bool = True) -> Summary:
    """The summary's sections; 404 for an unknown Patient, 410 for a deleted one, 403 for a role that may
    not use the operation. `scheduled`: the `X-Access-Context: scheduled` header (a silent read).
    `tasks_read=False`: the open Tasks are counted (all of them, one statement), not read (a page that shows
    only how many there are, app/web/notice.py); `accesses=False`: the access section is not read (a page
    that does not show it). The access is audited with exactly the records read."""
    ctx.guard.begin("operation", "Patient", patient_id)
    patient = await ctx.repo.get("Patient", patient_id)
    # one decision: the operation, and the read of the Patient it is on (none: unknown or deleted)
    shown = patient if patient is not None and not patient.deleted else None
    await ctx.guard.authorize("read", "Patient", shown, res_id=patient_id, operation=OPERATION)
    if patient is None:
        raise NotFound(f"Patient/{patient_id} is not known", msg_id="SF-0301", expression="id")
    if patient.deleted:
        raise Gone(f"Patient/{patient_id} was deleted", msg_id="SF-0302")
    child = child_criterion(patient)
    categories = ",".join(f"{COMM_CATEGORY}|{c}" for c in NOTICE_CATEGORIES)
    sections = _Sections(ctx)
    flags, authors = await sections.read(
        "Flag", [child, ("status", "active"), ("_include", "Flag:author"), ("_count", str(OPEN_LIMIT))]
    )
    notices, _ = await sections.read(
        "Communication",
        [
            child,
            ("category", categories),
            ("status:not", "entered-in-error"),
            ("_sort", "-sent"),
            ("_count", str(RECENT)),
        ],
    )
    if tasks_read:
        tasks, _ = await sections.read(
            "Task", [child, *OPEN_ACKNOWLEDGEMENTS, ("_sort", "-authored-on"), ("_count", str(OPEN_LIMIT))]
        )
        open_tasks = len(tasks)
    else:
        tasks, open_tasks = [], await sections.count("Task", [child, *OPEN_ACKNOWLEDGEMENTS])
    withheld = await sections.withheld()
    seen: list[StoredResource] = []
    if accesses:
        seen, w_accesses = await _accesses(ctx, patient.id)
        withheld = withheld or w_accesses
    now: datetime = ctx.clock.now()
    await record_flag_access(ctx, ctx.principal, flags, scheduled=scheduled, now=now)
    await ctx.guard.audited(patient, shown=[*flags, *authors, *notices, *tasks, *seen])
    return Summary(patient, flags, authors, notices, tasks, open_tasks, seen, withheld, now)


async def safeguarding_summary(ctx: WriteContext, patient_id: str, *, scheduled: bool) -> dict[str, Any]:
    """The summary Bundle (`summarise`, every section read)."""
    summary = await summarise(ctx, patient_id, scheduled=scheduled)
    base, patient = ctx.base, summary.patient
    matches = [patient, *summary.flags, *summary.notices, *summary.tasks, *summary.accesses]
    entries = [_entry(base, r, "match") for r in [patient, *summary.flags]]
    entries += [_entry(base, r, "include") for r in summary.authors]
    entries += [_entry(base, r, "match") for r in [*summary.notices, *summary.tasks, *summary.accesses]]
    if summary.withheld:
        entries.append(outcome_entry([withheld_issue()]))
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": format_instant(utc_ms(summary.now))},
        "type": "searchset",
        "total": len(matches),
        "link": [{"relation": "self", "url": f"{base}/Patient/{patient.id}/${OPERATION}"}],
        "entry": entries,
    }
