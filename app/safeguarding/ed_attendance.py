"""What an ED Encounter write implies (docs/api/ed-attendance.md); each rule a small function.

- An attendance is an Encounter of class EMER (v3-ActCode) whose status is not `planned`, `cancelled`
  or `entered-in-error`; its subject is the child by reference or by NHS-number identifier only
  (a Patient with that NHS number is then found; unknown numbers keep the identifier).
- `ed-attendance`: one notice per attendance, the first time it is written (created or updated).
- `did-not-wait`: the discharge disposition is one of the three SNOMED CT "left before care was
  complete" codes: the notice is a did-not-wait notice (urgent) instead; an attendance first recorded
  in progress and later finished as did-not-wait gets both, each once.
- `think-family`: the attender is an adult (18 or over: children are under 18, as in FGM-IS) with
  dependent children: one notice per child, `about` the adult's Encounter, no `encounter` element.
- the attendance's reason (`reasonCode`) is copied into the child's own notice, which its health visitor
  reads (the ED's Encounter is not hers to read); never from an Encounter with a restricted or
  sensitivity label (a sexual-health attendance's reason stays in its record), nor into a Think Family
  notice (the adult's reason is the adult's).
- priority `urgent`: an active CP / LAC / unborn-plan flag, an injury attendance under 1 year, or
  did-not-wait; else `routine` (a notice routed to no one keeps these rules). Routing is routing.py;
  the acknowledgement Task is tasks.py (due in working days, weekends and bank holidays skipped); a
  notice routed to no one goes to the ED's own safeguarding lead, else is stored with an owner-less
  Task, and is never silent (unrouted.py).
Idempotent: a notice carries the identifier `https://fhir.safeflag.example/Id/notice` =
`Encounter/<id>|<category>|<child>` (child = Patient id, or the NHS number when no Patient is on file);
the same attendance never produces the same notice twice, so neither a re-sent Encounter (HAPI makes
no new version for identical content) nor a later version notifies again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from app.config import HolidaysRegion
from app.safeguarding.lookup import Lookup
from app.safeguarding.routing import ADULT_AGE, Route, age_on, route_child
from app.safeguarding.tasks import DEFAULT_REGION, acknowledgement_task
from app.safeguarding.unrouted import Sent, ed_organization, to_ed_lead
from app.search.prepared import prepared
from app.security.labels import is_restricted, security_labels
from app.security.policy import PLAN_TYPES
from app.storage.repository import Repository
from app.stored import StoredResource, format_instant
from app.vocabulary import (
    ACT_CODE,
    FLAG_CATEGORY,
    IDENTIFIER_SYSTEM,
    SNOMED,
    STRUCTURE_DEFINITION,
    CommunicationCategory,
)
from app.vocabulary import COMMUNICATION_CATEGORY as COMM_CATEGORY
from app.vocabulary import UNROUTED_REASON as REASON_SYSTEM

NOTICE_ID_SYSTEM = IDENTIFIER_SYSTEM + "notice"
EXT = STRUCTURE_DEFINITION
DNW_CODES = frozenset({"1066301000000103", "1066311000000101", "1066321000000107"})
INJURY_CODES = frozenset({"417746004", "82271004", "125667009"})
NOT_ATTENDED = frozenset({"planned", "cancelled", "entered-in-error"})


def _codes(concept: Any, system: str) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {c.get("code") for c in concept.get("coding") or [] if c.get("system") == system and c.get("code")}


def is_emergency(encounter: dict[str, Any]) -> bool:
    cls = encounter.get("class") or {}
    return cls.get("system") == ACT_CODE and cls.get("code") == "EMER"


def is_attendance(encounter: dict[str, Any]) -> bool:
    """An ED attendance that happened: class EMER and not planned, cancelled or recorded in error
    (https://hl7.org/fhir/R4/valueset-encounter-status.html)."""
    return is_emergency(encounter) and encounter.get("status") not in NOT_ATTENDED


def did_not_wait(encounter: dict[str, Any]) -> bool:
    disposition = (encounter.get("hospitalization") or {}).get("dischargeDisposition")
    return bool(_codes(disposition, SNOMED) & DNW_CODES)


def is_injury(encounter: dict[str, Any]) -> bool:
    return any(_codes(c, SNOMED) & INJURY_CODES for c in encounter.get("reasonCode") or [])


def shared_reason(encounter: dict[str, Any]) -> list[dict[str, Any]]:
    """The attendance's reason the notice may carry: the Encounter's reasonCode, unless a label keeps the
    Encounter from others (restricted, or a sensitivity label such as SEX): then nothing."""
    if is_restricted(encounter) or any(c.get("system") == ACT_CODE for c in security_labels(encounter)):
        return []
    return [dict(c) for c in encounter.get("reasonCode") or [] if isinstance(c, dict)]


def priority(*, plan_flag: bool, age: int | None, injury: bool, dnw: bool) -> str:
    if plan_flag or dnw or (injury and age is not None and age < 1):
        return "urgent"
    return "routine"


def attendance_date(encounter: dict[str, Any], now: datetime) -> date:
    start = (encounter.get("period") or {}).get("start")
    if isinstance(start, str) and len(start) >= 10:
        try:
            return date.fromisoformat(start[:10])
        except ValueError:
            pass
    return now.date()


@dataclass(frozen=True)
class Notice:
    category: str
    child: StoredResource | None
    child_ref: dict[str, Any] | None
    about: str  # Encounter/<id>
    own_encounter: bool
    ambiguous: bool = False  # the subject's NHS number is held by several Patients (`child` is None)


def _child_ref(child: StoredResource | None, subject: Any) -> dict[str, Any] | None:
    if child is not None:
        return {"reference": f"Patient/{child.id}"}
    return subject if isinstance(subject, dict) else None


def _key(notice: Notice) -> str:
    who = notice.child.id if notice.child else (notice.child_ref or {}).get("identifier", {}).get("value", "?")
    return f"{notice.about}|{notice.category}|{who}"


# the searches every ED attendance runs, prepared once (app/search/prepared.py)
_NOTICE = prepared("Communication", [("identifier", f"{NOTICE_ID_SYSTEM}|:key")], count=1)
_ACTIVE_FLAGS_OF_CHILD = prepared("Flag", [("patient", "Patient/:child"), ("status", "active")])
_ACTIVE_FLAGS_BY_IDENTIFIER = prepared("Flag", [("patient:identifier", ":system|:value"), ("status", "active")])


async def _already(lookup: Lookup, key: str) -> bool:
    return bool(await _NOTICE.run(lookup.session, key=key))


async def _plan_flag(lookup: Lookup, child: StoredResource | None, child_ref: dict[str, Any] | None) -> bool:
    if child is not None:
        flags = await _ACTIVE_FLAGS_OF_CHILD.run(lookup.session, child=child.id)
    else:  # known by NHS number only: flags recorded against that identifier
        ident = (child_ref or {}).get("identifier") or {}
        if not (isinstance(ident.get("system"), str) and isinstance(ident.get("value"), str)
                and ident["system"] and ident["value"]):
            return False
        flags = await _ACTIVE_FLAGS_BY_IDENTIFIER.run(lookup.session, system=ident["system"], value=ident["value"])
    return any(_codes(cat, FLAG_CATEGORY) & PLAN_TYPES for f in flags for cat in f.content.get("category") or [])


async def dependent_children(lookup: Lookup, adult: StoredResource) -> list[StoredResource]:
    """Children of RelatedPersons standing for the adult with parental responsibility or in the household."""
    people: dict[str, StoredResource] = {}
    for ident in adult.content.get("identifier") or []:
        if ident.get("system") and ident.get("value"):
            for rp in await lookup.search("RelatedPerson", [("identifier", f"{ident['system']}|{ident['value']}")]):
                people[rp.id] = rp
    for link in adult.content.get("link") or []:
        ref = (link.get("other") or {}).get("reference", "")
        if link.get("type") == "seealso" and ref.startswith("RelatedPerson/"):
            person = await lookup.get(ref)
            if person is not None:
                people[person.id] = person
    children: dict[str, StoredResource] = {}
    for rp in people.values():
        flags = {e.get("url"): e.get("valueBoolean") for e in rp.content.get("extension") or []}
        if not (flags.get(EXT + "parental-responsibility") or flags.get(EXT + "household-member")):
            continue
        child = await lookup.resolve_subject(rp.content.get("patient"))
        if child is not None and child.id != adult.id:
            children[child.id] = child
    return [children[k] for k in sorted(children)]


async def notices_for(lookup: Lookup, encounter: StoredResource, now: datetime) -> list[Notice]:
    content = encounter.content
    if not is_attendance(content):
        return []
    about = f"Encounter/{encounter.id}"
    matches = await lookup.subject_matches(content.get("subject"))
    subject = matches[0] if len(matches) == 1 else None
    on = attendance_date(content, now)
    age = age_on(subject.content.get("birthDate"), on) if subject else None
    category = CommunicationCategory.DID_NOT_WAIT if did_not_wait(content) else CommunicationCategory.ED_ATTENDANCE
    if age is not None and age >= ADULT_AGE:
        kids = await dependent_children(lookup, subject) if subject else []
        return [Notice(CommunicationCategory.THINK_FAMILY, k, _child_ref(k, None), about, False) for k in kids]
    return [Notice(category, subject, _child_ref(subject, content.get("subject")), about, True, len(matches) > 1)]


def communication(
    notice: Notice, encounter: StoredResource, route: Route, prio: str, now: datetime, key: str
) -> dict[str, Any]:
    content = encounter.content
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": NOTICE_ID_SYSTEM, "value": key}],
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": notice.category}]}],
        "priority": prio,
        "about": [{"reference": notice.about}],
        "sent": format_instant(now),
    }
    if notice.child_ref:
        comm["subject"] = notice.child_ref
    if notice.own_encounter:
        comm["encounter"] = {"reference": notice.about}
        reason = shared_reason(content)
        if reason:
            comm["reasonCode"] = reason
    if route.recipient:
        comm["recipient"] = [route.recipient]
    if route.reason:  # routed to no one: the governance report counts it, wherever it went instead
        comm["meta"] = {"tag": [{"system": REASON_SYSTEM, "code": route.reason}]}
    if isinstance(content.get("serviceProvider"), dict):
        comm["sender"] = content["serviceProvider"]
    start = (content.get("period") or {}).get("start", "")
    label = {CommunicationCategory.ED_ATTENDANCE: "ED attendance",
             CommunicationCategory.DID_NOT_WAIT: "Left ED before care was complete",
             CommunicationCategory.THINK_FAMILY: "Think Family: an adult in the child's household attended ED",
             }[notice.category]
    comm["payload"] = [{"contentString": f"{label}{' on ' + start if start else ''} (routed via {route.via})"}]
    return comm


async def on_encounter_write(
    repo: Repository, lookup: Lookup, encounter: StoredResource, now: datetime, *, first_write: bool = False,
    region: HolidaysRegion = DEFAULT_REGION,
) -> list[Sent]:
    """Create the notices (and their acknowledgement Tasks) an Encounter write implies; returns them.
    `first_write`: the Encounter did not exist before this write, so no notice of it can exist yet
    (the idempotency search is skipped on the hot path of a new attendance)."""
    created: list[Sent] = []
    for notice in await notices_for(lookup, encounter, now):
        key = _key(notice)
        if not first_write and await _already(lookup, key):
            continue
        on = attendance_date(encounter.content, now)
        age = age_on(notice.child.content.get("birthDate"), on) if notice.child else None
        prio = priority(plan_flag=await _plan_flag(lookup, notice.child, notice.child_ref), age=age,
                        injury=notice.own_encounter and is_injury(encounter.content),
                        dnw=notice.category == CommunicationCategory.DID_NOT_WAIT)
        route = await route_child(lookup, notice.child, on, ambiguous=notice.ambiguous)
        route = await to_ed_lead(lookup, route, ed_organization(encounter))
        comm = await repo.create("Communication", communication(notice, encounter, route, prio, now, key))
        task = await repo.create("Task", acknowledgement_task(
            communication_id=comm.id, child=notice.child_ref, owner=route.recipient, priority=prio, sent=now,
            requester=encounter.content.get("serviceProvider"), region=region,
        ))
        created.append(Sent(notice.category, f"Communication/{comm.id}", f"Task/{task.id}", route))
    return created
