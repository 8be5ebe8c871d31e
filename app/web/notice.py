"""One notice's page and what can be done on it, each a FHIR interaction as the signed-in user:

- the page searches the acknowledgement Task by id with the list's includes (its notice, the child, the
  attendance, the owner: another team's notice is 404, exactly as the API answers `GET Task/id`) and
  reads the child's `$safeguarding-summary` as far as the page shows it (active flags with their owners'
  contact numbers, recent notices, and how many open acknowledgements the child has, counted, not read;
  not the accesses, which it does not show); withheld restricted records are said with the summary's own
  notice; each access is audited as that interaction;
- Acknowledge is an update of the Task to `completed` (with the optional note as its `statusReason`,
  one of the status elements a health visitor may change), version-checked against the version the
  page showed (a notice changed meanwhile is 412, not silently overwritten);
- Pass to a colleague is an update of the Task's `owner` to another of the team's PractitionerRoles,
  again version-checked; the policy decides who may (a lead; a health visitor or school nurse only to a
  colleague of her own team, and changing nothing else).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.errors import NotFound, Unprocessable
from app.safeguarding.summary import summarise
from app.safeguarding.tasks import OPEN_STATUSES
from app.security.labels import withheld_issue
from app.stored import format_instant
from app.vocabulary import FLAG_CATEGORY, CareTeamRole, UserRole
from app.web import fmt
from app.web.notices import (
    INCLUDES,
    NoticeRow,
    contents,
    display_of,
    human_name,
    names_of,
    own_refs,
    records_of,
    row,
)

if TYPE_CHECKING:
    from app.interactions.service import FhirService

NOTE_MAX = 1000  # characters of an acknowledgement note
TEAM_ROLES = (CareTeamRole.HEALTH_VISITOR, CareTeamRole.SCHOOL_NURSE, CareTeamRole.SAFEGUARDING_LEAD)


@dataclass
class FlagView:
    label: str
    since: str
    owner: str
    phones: list[str]


@dataclass
class NoticePage:
    notice: NoticeRow
    text: str
    child_name: str
    birth: str
    flags: list[FlagView] = field(default_factory=list)
    recent: list[tuple[str, str]] = field(default_factory=list)  # (when, what)
    open_tasks: int = 0
    withheld: str | None = None
    open: bool = True


def payload_text(comm: dict[str, Any]) -> str:
    return "; ".join(str(p["contentString"]) for p in comm.get("payload") or [] if p.get("contentString"))


def readable_payload(comm: dict[str, Any], names: Mapping[str, str]) -> str:
    """A notice's text as a person reads it (`fmt.readable`): UK times, the names of the records read
    (`names_of` them, worked out once for a page's many texts)."""
    return fmt.readable(payload_text(comm), names)


def _flag(flag: dict[str, Any], found: dict[str, dict[str, Any]]) -> FlagView:
    labels = [c.get("display") or c.get("code", "") for cc in flag.get("category") or []
              for c in cc.get("coding") or [] if c.get("system") == FLAG_CATEGORY]
    author = found.get((flag.get("author") or {}).get("reference", ""), {})
    phones = [f"{t.get('value')}" + (" (out of hours)" if t.get("rank") == 2 else "")
              for t in author.get("telecom") or [] if t.get("system") == "phone"]
    label = (labels[0] if labels else (flag.get("code") or {}).get("text", "Flag")).replace("-", " ")
    return FlagView(label.capitalize(), fmt.uk_date((flag.get("period") or {}).get("start")),
                    display_of(flag.get("author"), found), phones)


async def notice_page(svc: FhirService, task_id: str, now: datetime) -> NoticePage:
    # the notice, the child, the owner and the attendance as the list's search includes them for this reader
    found = records_of((await svc.searched("Task", [("_id", task_id), *INCLUDES]))[0])
    task = found.get(f"Task/{task_id}")
    if task is None:  # not hers to read, unknown or deleted: the read's own answer (404, 410), as the API's
        await svc.read("Task", task_id)
        raise NotFound(f"Task/{task_id} is not known", msg_id="SF-0301", expression="id")
    focus = (task.get("focus") or {}).get("reference", "")
    child_ref = (task.get("for") or {}).get("reference", "")
    summary = None
    if child_ref.startswith("Patient/"):  # the page shows how many open Tasks, and no accesses
        summary = await summarise(svc, child_ref.partition("/")[2], scheduled=False, tasks_read=False,
                                  accesses=False)
        found = contents([summary.patient, *summary.flags, *summary.authors, *summary.notices]) | found
    child = found.get(child_ref)
    names = names_of(found)
    notice = row(task, found, now)
    return NoticePage(
        notice=notice, text=readable_payload(found.get(focus, {}), names),
        child_name=human_name(child) if child else notice.child_name,
        birth=fmt.uk_date((child or {}).get("birthDate")),
        flags=[_flag(r.content, found) for r in summary.flags] if summary else [],
        recent=[(fmt.uk_datetime(r.content.get("sent")), readable_payload(r.content, names) or "Notice")
                for r in summary.notices] if summary else [],
        open_tasks=summary.open_tasks if summary else 0,
        withheld=withheld_issue().diagnostics if summary and summary.withheld else None,
        open=task.get("status") in OPEN_STATUSES,
    )


def _version(raw: str) -> str:
    if not (raw.isascii() and raw.isdigit()):
        raise Unprocessable("The form's version is not a number", msg_id="SF-1701", expression="version")
    return raw


async def acknowledge(svc: FhirService, task_id: str, version: str, note: str, now: datetime) -> None:
    """The Task `completed`, with the note as its statusReason text; If-Match the version shown."""
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise Unprocessable(f"The note may be at most {NOTE_MAX} characters", msg_id="SF-1702",
                            expression="note")
    task = dict((await svc.read("Task", task_id)).content)
    task["status"] = "completed"
    task["lastModified"] = format_instant(now)
    if note:
        task["statusReason"] = {"text": note}
    await svc.update("Task", task_id, task, if_match=_version(version))


async def colleagues(svc: FhirService) -> list[tuple[str, str]]:
    """(reference, name) of the PractitionerRoles of the user's organisation in the notice-handling roles;
    a health visitor's or school nurse's list leaves out her own (she passes a notice on to someone else)."""
    org = getattr(svc.principal, "org", None)
    if not org:
        return []
    lead = svc.principal is None or svc.principal.role == UserRole.SAFEGUARDING_LEAD
    own = set() if lead else set(own_refs(svc))
    bundle = await svc.search("PractitionerRole", [("organization", org), ("_count", "200")])
    out = []
    for e in bundle.get("entry") or []:
        res = e["resource"]
        if res.get("resourceType") != "PractitionerRole" or res.get("active") is False:
            continue
        roles = {c.get("code") for cc in res.get("code") or [] for c in cc.get("coding") or []}
        if roles & set(TEAM_ROLES) and f"PractitionerRole/{res['id']}" not in own:
            ref = f"PractitionerRole/{res['id']}"
            out.append((ref, (res.get("practitioner") or {}).get("display") or ref))
    return sorted(out, key=lambda x: x[1])


async def reassign(svc: FhirService, task_id: str, version: str, owner: str) -> None:
    """The Task's owner becomes `owner`, one of the team's PractitionerRoles (422 for anything else)."""
    if owner not in {ref for ref, _ in await colleagues(svc)}:
        raise Unprocessable("Choose a colleague of your team", msg_id="SF-1703", expression="owner")
    task = dict((await svc.read("Task", task_id)).content)
    task["owner"] = {"reference": owner}
    await svc.update("Task", task_id, task, if_match=_version(version))

