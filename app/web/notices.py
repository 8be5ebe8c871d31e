"""The notices a health visitor, school nurse or safeguarding lead works through, read the way `/fhir`
serves them: every list here IS a Task search (`Task?code=acknowledge&status=<open>&owner=...` with
`_include` of the notice, the child and the attendance) run through the interaction engine as the
signed-in user, so the policy decides what is shown, restricted records are withheld with the same
information entry a search carries, and the page view is audited as that search.

A notice on a list is the acknowledgement Task with what its focus Communication, the child (Patient)
and the attendance (Encounter, its serviceProvider) say; the attendance's reason is the Encounter's, or
for a reader who may not read the Encounter, the copy the notice carries (`Communication.reasonCode`). Urgent notices come first, then the newest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.fhir.search.definitions import params_for
from app.safeguarding.tasks import OPEN_STATUSES, due_at, is_escalated, is_overdue
from app.vocabulary import TASK_CODE as TASK_CODES
from app.vocabulary import CommunicationCategory, TaskCode
from app.web import fmt

if TYPE_CHECKING:
    from collections.abc import Iterable

    from app.errors import Issue
    from app.fhir.search.results import SearchResult
    from app.interactions.service import FhirService
    from app.stored import StoredResource

CATEGORY_LABELS = {
    CommunicationCategory.ED_ATTENDANCE: "ED attendance",
    CommunicationCategory.DID_NOT_WAIT: "Left ED before care was complete",
    CommunicationCategory.THINK_FAMILY: "Think Family: an adult in the household attended ED",
    CommunicationCategory.ESCALATION: "Escalation",
}
LIST_LIMIT = 500  # the search's _count ceiling: every open notice of one person or team
OWNER = ("_include", "Task:owner")
SENDER = ("_include:iterate", "Communication:sender")
# a notice's Task has its Communication as focus (app/safeguarding/tasks.py): included as that type, so that
# the include does not look first at which types the focus references name (a statement less)
INCLUDES = [("_include", "Task:focus:Communication"), ("_include", "Task:patient"), OWNER,
            ("_include:iterate", "Communication:encounter"), SENDER,
            ("_include:iterate", "Encounter:service-provider")]
# a list that does not say whom a notice is with (her own notices) reads no owners: a statement less
WITHOUT_OWNER = [i for i in INCLUDES if i != OWNER]
NAMED = ("Patient", "PractitionerRole", "Practitioner", "Organization")  # the records `records` reads
# the attendance's start as the notice's text states it ("ED attendance on 2026-01-05T09:15:00Z (...)"), for
# readers who may not read the ED's Encounter itself (a health visitor reads her notices, not the ED's records)
_STATED_START = re.compile(r" on (\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}))")


class NoticeRow(NamedTuple):
    """One notice as the pages show it (strings already in UK form); compared and hashed by value (a card
    is kept for each distinct row, app/web/templates.py `card`). A named tuple, not a frozen dataclass: a
    list makes 200 of them and hashes each at every view, three times faster so."""

    task_id: str
    version: int
    status: str
    category: str
    label: str
    priority: str
    child_id: str | None
    child_name: str
    age: str
    nhs_masked: str
    nhs: str
    attended: str
    place: str
    reason: str
    due: str
    overdue: bool
    escalated: bool
    arrived: str
    arrived_ago: str
    owner: str
    sent_at: datetime | None = None

    @property
    def order(self) -> str:
        """Where the row stands on a list, for static/live.js: "<1 if urgent> <sent, ms since the epoch>"."""
        return f"{int(self.priority == 'urgent')} {int(self.sent_at.timestamp() * 1000) if self.sent_at else 0}"


@dataclass
class Listing:
    rows: list[NoticeRow] = field(default_factory=list)
    withheld: str | None = None  # the search's information entry, when restricted records were withheld
    # reference -> the records the list's search read (the reader may read them): the desk's other lists
    # name what these name without searching them again
    found: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def overdue(self) -> list[NoticeRow]:
        return [r for r in self.rows if r.overdue]

    @property
    def late(self) -> list[NoticeRow]:
        """The overdue, then the escalated not overdue (the lead's desk lists them together)."""
        return [*self.overdue, *(r for r in self.rows if r.escalated and not r.overdue)]


def _ref(value: Any) -> str:
    return value.get("reference", "") if isinstance(value, dict) else ""


def _codes(concepts: Any) -> list[str]:
    items = concepts if isinstance(concepts, list) else [concepts] if concepts else []
    return [c.get("code", "") for cc in items if isinstance(cc, dict) for c in cc.get("coding") or []]


def human_name(patient: dict[str, Any] | None) -> str:
    for name in (patient or {}).get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", []), name.get("family", "")]
        if any(parts):
            return " ".join(p for p in parts if p)
    return "Name not known"


def nhs_of(patient: dict[str, Any] | None, ref: Any = None) -> str:
    """The child's NHS number: from the Patient, else from an identifier-only reference."""
    idents = [*((patient or {}).get("identifier") or []), *([ref["identifier"]] if isinstance(ref, dict)
                                                         and isinstance(ref.get("identifier"), dict) else [])]
    for ident in idents:
        if ident.get("system") == NHS_NUMBER_SYSTEM and isinstance(ident.get("value"), str):
            return str(ident["value"])
    return ""


def withheld_text(bundle: dict[str, Any]) -> str | None:
    for entry in bundle.get("entry") or []:
        if (entry.get("search") or {}).get("mode") == "outcome":
            for issue in entry["resource"].get("issue") or []:
                if issue.get("code") == "suppressed":  # shown without its message id ("SF-0820: ")
                    return re.sub(r"^SF-\d{4}: ", "", str(issue.get("diagnostics", "")))
    return None


def withheld_of(issues: list[Issue]) -> str | None:
    """`withheld_text` of the issues a search's Bundle would carry (`FhirService.searched`)."""
    return next((issue.diagnostics for issue in issues if issue.code == "suppressed"), None)


def records_of(result: SearchResult) -> dict[str, dict[str, Any]]:
    """`by_ref` of a search's result: reference -> the content of every record it found."""
    return contents((*result.matches, *result.included))


def contents(records: Iterable[StoredResource]) -> dict[str, dict[str, Any]]:
    """Reference -> content of each of `records`."""
    return {f"{r.resource_type}/{r.id}": r.content for r in records}


def by_ref(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{e['resource']['resourceType']}/{e['resource'].get('id')}": e["resource"]
            for e in bundle.get("entry") or [] if (e.get("search") or {}).get("mode") != "outcome"}


def name_of(res: dict[str, Any] | None) -> str:
    """A record's name as a page shows it: an organisation's name, a role's practitioner, a person's
    name; "" when it has none."""
    res = res or {}
    if res.get("name") and isinstance(res["name"], str):
        return str(res["name"])
    prac = res.get("practitioner") or {}
    if isinstance(prac, dict) and prac.get("display"):
        return str(prac["display"])
    if isinstance(res.get("name"), list) and res.get("resourceType") in ("Patient", "Practitioner", "RelatedPerson"):
        return human_name(res)
    return ""


def names_of(found: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Reference -> name of every named record a page read (for `fmt.readable`)."""
    return {ref: name for ref, res in found.items() if (name := name_of(res))}


def display_of(ref: Any, found: dict[str, dict[str, Any]]) -> str:
    """The name of what a reference points at: the record's (when the page could read it), the
    reference's own display, else the kind of record ("a practitioner"); never the bare reference."""
    if not isinstance(ref, dict):
        return ""
    name = name_of(found.get(_ref(ref)))
    if name or ref.get("display"):
        return name or str(ref["display"])
    return fmt.readable(str(ref.get("reference") or ""), {})


def stated_start(comm: dict[str, Any]) -> str | None:
    for part in comm.get("payload") or []:
        found = _STATED_START.search(str(part.get("contentString", "")))
        if found:
            return found.group(1)
    return None


def _child(child_ref: Any, child: dict[str, Any] | None, now: datetime) -> tuple[str | None, str, str, str, str]:
    """(id, name, age, masked and full NHS number) of a notice's child."""
    nhs = nhs_of(child, child_ref)
    ref = _ref(child_ref)
    return (ref.removeprefix("Patient/") if ref.startswith("Patient/") else None,
            human_name(child) if child else "Child not matched to a record",
            fmt.age((child or {}).get("birthDate"), now), fmt.nhs_number(nhs, masked=True),
            fmt.nhs_number(nhs, masked=False))


def row(task: dict[str, Any], found: dict[str, dict[str, Any]], now: datetime,
        shared: dict[Any, Any] | None = None) -> NoticeRow:
    """`task` as a list shows it. `shared`: what rows of one list have in common (a child, a place, an
    owner is worked out once per list, not once per notice)."""
    shared = {} if shared is None else shared
    comm = found.get(_ref(task.get("focus")), {})
    child_ref = task.get("for") or comm.get("subject")
    child_key = ("child", _ref(child_ref) or repr(child_ref))
    if child_key not in shared:
        shared[child_key] = _child(child_ref, found.get(_ref(child_ref)), now)
    child_id, child_name, age, nhs_masked, nhs = shared[child_key]
    encounter = found.get(_ref(comm.get("encounter"))) or {}
    category = next(iter(_codes(comm.get("category"))), "")
    due = due_at(task)
    sent = fmt.instant(comm.get("sent") or task.get("authoredOn"))
    reasons = [cc.get("text") or next((c.get("display") or c.get("code") for c in cc.get("coding") or []), "")
               for cc in encounter.get("reasonCode") or comm.get("reasonCode") or []]
    place_ref = _place(comm, encounter)
    return NoticeRow(
        task_id=str(task["id"]), version=int((task.get("meta") or {}).get("versionId", 1)),
        status=str(task.get("status", "")), category=category, label=CATEGORY_LABELS.get(category, category),
        priority=str(task.get("priority") or comm.get("priority") or "routine"),
        child_id=child_id, child_name=child_name, age=age, nhs_masked=nhs_masked, nhs=nhs,
        attended=fmt.uk_datetime((encounter.get("period") or {}).get("start") or stated_start(comm)),
        place=_shared_display(place_ref, found, shared),
        reason=", ".join(r for r in reasons if r),
        due=fmt.uk_datetime(due.replace(tzinfo=UTC) if due else None),
        overdue=is_overdue(task, now.replace(tzinfo=None)),
        escalated=is_escalated(task), arrived=fmt.uk_datetime(sent), arrived_ago=fmt.ago(sent, now),
        owner=_shared_display(task.get("owner"), found, shared) or "Nobody (unrouted)", sent_at=sent,
    )


def _place(comm: dict[str, Any], encounter: dict[str, Any]) -> Any:
    """Where the child attended: the attendance's provider, else (an attendance the reader may not read,
    or one that names none) the notice's sender."""
    return encounter.get("serviceProvider") or comm.get("sender")


async def with_places(svc: FhirService, tasks: list[dict[str, Any]], found: dict[str, dict[str, Any]]
                      ) -> dict[str, dict[str, Any]]:
    """The senders that name the place (`_place`) of those notices of `tasks` whose attendance does not,
    not read with the list, as far as the reader may read them: none when every attendance she reads
    names its provider, as the ED's do."""
    refs = []
    for task in tasks:
        comm = found.get(_ref(task.get("focus"))) or {}
        place = _ref(_place(comm, found.get(_ref(comm.get("encounter"))) or {}))
        if place and place not in found:
            refs.append(place)
    return await records(svc, refs, params_for("Communication")["sender"].targets or NAMED)


async def records(svc: FhirService, refs: list[str], kinds: tuple[str, ...] = NAMED,
                  known: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The records `refs` point at (of `kinds`) that the reader may read, for their names: audited searches
    by `_id`, one per type (as many as a search may name at once), of those not `known` already (records
    the reader's own searches of this page read)."""
    by_type: dict[str, set[str]] = {}
    for ref in refs:
        kind, _, rid = ref.partition("/")
        if known and ref in known:
            continue
        if kind in kinds and rid:
            by_type.setdefault(kind, set()).add(rid)
    found: dict[str, dict[str, Any]] = {}
    size = max(1, min(int(svc.settings.search_max_values), LIST_LIMIT))
    for kind, ids in sorted(by_type.items()):
        names = sorted(ids)
        for start in range(0, len(names), size):
            result, _ = await svc.searched(kind, [("_id", ",".join(names[start:start + size])),
                                                  ("_count", str(LIST_LIMIT)), ("_total", "none")])
            found |= records_of(result)
    return found


def _shared_display(ref: Any, found: dict[str, dict[str, Any]], shared: dict[Any, Any]) -> str:
    """`display_of`, once per list for each reference (with its display) its rows share."""
    key = ("display", _ref(ref), ref.get("display") if isinstance(ref, dict) else None)
    if key not in shared:
        shared[key] = display_of(ref, found)
    return str(shared[key])


def _includes(with_owner: bool, attendances: bool) -> list[tuple[str, str]]:
    """A list's includes. For a reader who reads the attendances (`attendances`, the lead's desk) a notice's
    place is its attendance's provider: the senders are read afterwards only for the notices whose
    attendance she may not read or that names none (`with_places`), not included at every view (a look
    at their types and a read, two statements)."""
    includes = INCLUDES if with_owner else WITHOUT_OWNER
    return [i for i in includes if i != SENDER] if attendances else includes


def open_query(owners: list[str] | None, *, unrouted: bool = False, with_owner: bool = True,
               attendances: bool = False) -> list[tuple[str, str]]:
    query = [("code", f"{TASK_CODES}|{TaskCode.ACKNOWLEDGE}"), ("status", ",".join(OPEN_STATUSES)),
             ("_count", str(LIST_LIMIT)), *_includes(with_owner, attendances)]
    if owners:
        query.append(("owner", ",".join(sorted(owners))))
    if unrouted:
        query.append(("owner:missing", "true"))
    return query


async def open_notices(svc: FhirService, owners: list[str] | None, now: datetime, *,
                       unrouted: bool = False, with_owner: bool = True, overdue: bool = False,
                       attendances: bool = False) -> Listing:
    """The open acknowledgement Tasks owned by `owners` (any of them; None: all the user may read;
    `unrouted`: those with no owner), urgent first, then newest; one audited search (and one of the
    senders `with_places` reads, only when there are any). `with_owner`:
    read whom each is with (a list of one person's own notices need not); `overdue`: only the overdue
    among them (the others are not worked out at all); `attendances`: the reader reads the notices'
    attendances (a lead), so their senders are read only where the attendance does not name the place."""
    result, issues = await svc.searched("Task", open_query(owners, unrouted=unrouted, with_owner=with_owner,
                                                           attendances=attendances))
    found = records_of(result)
    tasks = [m.content for m in result.matches]
    if overdue:
        tasks = [t for t in tasks if is_overdue(t, now.replace(tzinfo=None))]
    if attendances:
        found |= await with_places(svc, tasks, found)
    shared: dict[Any, Any] = {}
    return Listing(by_urgency([row(t, found, now, shared) for t in tasks]), withheld_of(issues), found)


def by_urgency(rows: list[NoticeRow]) -> list[NoticeRow]:
    """Urgent first, then the newest (as the pages list them, and as static/live.js inserts a row)."""
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (r.priority != "urgent", -(r.sent_at or epoch).timestamp()))


async def changed_notices(svc: FhirService, task_ids: list[str], owners: list[str], now: datetime, *,
                          with_owner: bool = True, attendances: bool = False) -> tuple[list[NoticeRow], list[str]]:
    """Of the Tasks `task_ids` (changed since a page's position), the open notices owned by `owners`, and
    the ids of the others the user may read (acknowledged, passed on): they leave her list. One audited
    search (`Task?_id=...` with the list's includes), so the policy decides as for the whole list and a
    Task she may not read is neither shown nor named."""
    query = [("_id", ",".join(task_ids)), ("code", f"{TASK_CODES}|{TaskCode.ACKNOWLEDGE}"), ("_count", str(LIST_LIMIT)),
             *_includes(with_owner, attendances)]
    result, _ = await svc.searched("Task", query)
    found, mine, tasks = records_of(result), set(owners), [m.content for m in result.matches]
    if attendances:
        found |= await with_places(svc, tasks, found)
    rows, gone = [], []
    for task in tasks:
        if task.get("status") in OPEN_STATUSES and _ref(task.get("owner")) in mine:
            rows.append(row(task, found, now))
        else:
            gone.append(str(task["id"]))
    return by_urgency(rows), gone


def own_refs(svc: FhirService) -> list[str]:
    """What stands for the user personally (her PractitionerRoles and Practitioner)."""
    p = svc.principal
    refs = set(getattr(p, "own_refs", ()) or ())
    if p is not None and p.fhir_user:
        refs.add(p.fhir_user)
    return sorted(refs)


def team_refs(svc: FhirService) -> list[str]:
    """What stands for the user's team: the organisation, its PractitionerRoles and their Practitioners."""
    p = svc.principal
    refs = set(getattr(p, "org_refs", ()) or ())
    if p is not None and p.org:
        refs.add(p.org)
    return sorted(refs)
