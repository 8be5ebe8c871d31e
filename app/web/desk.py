"""The safeguarding lead's desk and the MASH practitioner's page, as FHIR interactions of the signed-in user:

- the team's open notices (`Task?code=acknowledge&status=<open>&owner=<the team>`), the overdue and the
  escalated among them, and the unrouted ones (`owner:missing=true`): notices.py;
- the referral-copy quality queue (`DocumentReference/$qa-queue` for the lead's organisation) and the
  review, which creates the completed `referral-qa` Task exactly as `POST /fhir/Task` would;
- the governance report for a month (`$governance-report`), checked, computed and audited as the
  operation is, drawn as a table with bars (no script);
- for MASH: the access notifications addressed to the authority (`Communication?category=access-notification`),
  the referral copies addressed to it (`Communication?category=mash-referral`) with the outcome already
  sent for each (`Communication?category=referral-outcome`), and the reply, a `referral-outcome`
  Communication `inResponseTo` the referral, created as `POST /fhir/Communication` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from app.errors import Unprocessable
from app.safeguarding.referral_qa import members_of, qa_queue
from app.safeguarding.referral_rules import QA_OUTCOME, TASK_CODE
from app.safeguarding.report import governance_report, month_range
from app.stored import format_instant
from app.vocabulary import COMMUNICATION_CATEGORY as COMM_CATEGORY
from app.vocabulary import CommunicationCategory, QaOutcome, TaskCode
from app.web import fmt
from app.web.notice import payload_text, readable_payload
from app.web.notices import by_ref, display_of, human_name, names_of, records, withheld_text

if TYPE_CHECKING:
    from app.interactions.service import FhirService

QA_OUTCOMES = {
    QaOutcome.CLEAR_AND_COMPLETE: "Clear and complete",
    QaOutcome.INCOMPLETE_INFORMATION: "Incomplete information",
    QaOutcome.THRESHOLD_NOT_EVIDENT: "Threshold not evident",
    QaOutcome.ESCALATED: "Escalated",
}
REPLY_MAX = 4000
# an access notification's text names its child, sender and recipient (the authority): all three are read
# for their names; a referral copy shows its child and sender only (its text is the copy's, not shown). The
# child is a Patient (a Group has no person's name to show): included as that type, so the include does
# not first look up which types the subjects name (a statement less per list)
REFERRAL_INCLUDES = [("_include", "Communication:subject:Patient"), ("_include", "Communication:sender")]
ACCESS_INCLUDES = [*REFERRAL_INCLUDES, ("_include", "Communication:recipient")]
# rows of each list on a MASH page, the newest first, older ones on the pages after; not how many there
# are in all (a full page would otherwise be counted as well at every view)
MASH_PAGE = 25
REPLIES_PAGE = 500  # outcomes read per search for the MASH page (the largest page a search gives)
SENT_SKEW = timedelta(days=1)  # how much earlier than its referral's `sent` an outcome is still looked for
# the figures the chart draws (counts; shares and times are in the table)
CHART = ("ed-notifications", "ed-overdue", "ed-unrouted", "referral-copies", "access-notifications")


@dataclass
class Item:
    """A row of a simple list: a record id and its columns, already in UK form."""

    res_id: str
    child_id: str
    child: str
    when: str
    who: str
    what: str
    reply: str = ""  # a referral copy's outcome, once the authority has sent it


def _match(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry") or [] if (e.get("search") or {}).get("mode") == "match"]


async def review_queue(svc: FhirService, known: dict[str, dict[str, Any]] | None = None
                       ) -> tuple[list[Item], str | None]:
    """The referral copies awaiting the lead's review, with their children's and authors' names; `known`:
    records the page's other searches read (the team's list names the children and the health visitors
    that most copies name), not searched again."""
    org = getattr(svc.principal, "org", None)
    members = members_of(svc.principal.org_refs) if svc.principal is not None and org else None
    bundle = await qa_queue(svc, org, [("_count", "200")], members=members)
    copies = _match(bundle)
    refs = [(d.get("subject") or {}).get("reference", "") for d in copies] + [
        a.get("reference", "") for d in copies for a in d.get("author") or []]
    found = {**(known or {}), **await records(svc, refs, known=known)}
    items = [Item(d["id"], (d.get("subject") or {}).get("reference", "").removeprefix("Patient/"),
                  display_of(d.get("subject"), found), fmt.uk_datetime(d.get("date") or
                                                                       (d.get("meta") or {}).get("lastUpdated")),
                  ", ".join(display_of(a, found) for a in d.get("author") or []),
                  d.get("description", "Referral copy")) for d in copies]
    return items, withheld_text(bundle)


async def review(svc: FhirService, document_id: str, outcome: str, note: str) -> None:
    """A completed `referral-qa` Task on the copy, owned by the reviewing lead."""
    if outcome not in QA_OUTCOMES:
        raise Unprocessable("Choose an outcome of the review", msg_id="SF-1704", expression="outcome")
    doc = (await svc.read("DocumentReference", document_id)).content
    owner = getattr(svc.principal, "fhir_user", None)
    task: dict[str, Any] = {
        "resourceType": "Task", "status": "completed", "intent": "order",
        "code": {"coding": [{"system": TASK_CODE, "code": TaskCode.REFERRAL_QA}]},
        "focus": {"reference": f"DocumentReference/{document_id}"},
        "output": [{"type": {"coding": [{"system": TASK_CODE, "code": TaskCode.QA_OUTCOME}]},
                    "valueCodeableConcept": {"coding": [{"system": QA_OUTCOME, "code": outcome}]}}],
    }
    if owner:
        task["owner"] = {"reference": owner}
    if isinstance(doc.get("subject"), dict):
        task["for"] = doc["subject"]
    if note.strip():
        task["note"] = [{"text": note.strip()[:REPLY_MAX]}]
    await svc.create("Task", task)


@dataclass
class Bar:
    name: str
    value: int
    percent: int


async def governance(svc: FhirService, month: str, now: datetime) -> list[tuple[str, list[tuple[str, Any]], list[Bar]]]:
    """(organisation, figures, bars) per organisation of the month, for the lead's own organisation;
    checked and audited as `GET /fhir/$governance-report?month=...&organization=...` is."""
    org = getattr(svc.principal, "org", None)
    svc.guard.begin("operation", query=f"$governance-report?month={month}")
    await svc.guard.authorize("operation", None, operation="governance-report")
    month_range(month)  # 400 for a malformed month
    report = await governance_report(svc.session, svc.settings.fhir_base, month, org, now)
    await svc.guard.audited()
    out = []
    for ref, tally in report.organizations.items():
        values = [(k, v) for k, v in tally.figures().items() if v is not None]
        counts = {k: int(v) for k, v in values if k in CHART and isinstance(v, int)}
        top = max([*counts.values(), 1])
        bars = [Bar(k.replace("-", " "), counts.get(k, 0), round(100 * counts.get(k, 0) / top)) for k in CHART]
        out.append((report.names.get(ref, ref), values, bars))
    return out


def _copy_of(comm: dict[str, Any]) -> str:
    return next((str((p.get("contentReference") or {}).get("reference", "")) for p in comm.get("payload") or []
                 if (p.get("contentReference") or {}).get("reference")), "")


async def _copies_custodians(svc: FhirService, comms: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The referral copies the Communications carry, with the organisations that hold them (the MASH reads
    Organizations, not the sender's PractitionerRole): one audited search."""
    ids = sorted({ref.removeprefix("DocumentReference/") for c in comms
                  if (ref := _copy_of(c)).startswith("DocumentReference/")})
    if not ids:
        return {}
    return by_ref(await svc.search("DocumentReference", [
        ("_id", ",".join(ids)), ("_count", "200"), ("_include", "DocumentReference:custodian")]))


def _sender(comm: dict[str, Any], found: dict[str, dict[str, Any]]) -> str:
    """Who sent a Communication, by name: the sender's (when the reader may read it), with the organisation
    holding its referral copy; never a bare reference."""
    who = display_of(comm.get("sender"), found)
    copy = found.get(_copy_of(comm)) or {}
    org = display_of(copy.get("custodian"), found) if isinstance(copy.get("custodian"), dict) else ""
    if org and who in ("", "a practitioner", org):
        return org
    return f"{who}, {org}" if org else who


@dataclass
class ListPage:
    """One page of a list: its rows, its number (1: the newest) and whether older rows follow."""

    items: list[Item]
    number: int = 1
    more: bool = False


async def mash_lists(svc: FhirService, *, access_page: int = 1,
                     referral_page: int = 1) -> tuple[ListPage, ListPage, str | None]:
    """(access notifications, referral copies) addressed to the MASH practitioner's authority, the page of
    each asked for (MASH_PAGE rows, newest first); a referral copy's text is not shown (its card names the
    child, the sender and the outcome sent), so it is not worked out, nor its recipient (the authority
    itself) read."""
    lists: list[ListPage] = []
    withheld = None
    referrals: list[dict[str, Any]] = []
    for category, number in ((CommunicationCategory.ACCESS_NOTIFICATION, access_page),
                             (CommunicationCategory.MASH_REFERRAL, referral_page)):
        access = category == CommunicationCategory.ACCESS_NOTIFICATION
        bundle = await svc.search("Communication", [
            ("category", f"{COMM_CATEGORY}|{category}"), ("_sort", "-sent"), ("_count", str(MASH_PAGE)),
            ("_offset", str((number - 1) * MASH_PAGE)), ("_total", "none"),
            *(ACCESS_INCLUDES if access else REFERRAL_INCLUDES)])
        found = by_ref(bundle)
        withheld = withheld or withheld_text(bundle)
        comms = [c for c in _match(bundle) if c.get("resourceType") == "Communication"]
        if not access:
            referrals = comms
            found |= await _copies_custodians(svc, comms)
        names = names_of(found) if access else {}
        lists.append(ListPage([Item(
            c["id"], (c.get("subject") or {}).get("reference", "").removeprefix("Patient/"),
            human_name(found.get((c.get("subject") or {}).get("reference", ""))),
            fmt.uk_datetime(c.get("sent")), _sender(c, found), readable_payload(c, names) if access else "",
        ) for c in comms], number, _has_next(bundle)))
    sent = await _replies(svc, referrals)
    for item in lists[1].items:
        item.reply = sent.get(f"Communication/{item.res_id}", "")
    return lists[0], lists[1], withheld


def _has_next(bundle: dict[str, Any]) -> bool:
    """Whether a search's answer says a next page follows."""
    return any(link.get("relation") == "next" for link in bundle.get("link") or [])


async def _replies(svc: FhirService, referrals: list[dict[str, Any]]) -> dict[str, str]:
    """Referral Communication -> the outcome sent in reply, for the referral Communications shown: every
    `referral-outcome` sent since the oldest of them was (a reply follows its referral; a day earlier
    still, for a sender whose clock was ahead), newest first, page after page, so that no shown
    referral looks unanswered however many outcomes the authority has sent (a second reply would follow)."""
    if not referrals:
        return {}
    query = [("category", f"{COMM_CATEGORY}|{CommunicationCategory.REFERRAL_OUTCOME}"), ("_sort", "-sent"),
             ("_count", str(REPLIES_PAGE)), ("_total", "none")]
    oldest = min(filter(None, (fmt.instant(c.get("sent")) for c in referrals)), default=None)
    if oldest is not None:
        query.append(("sent", f"ge{format_instant(oldest - SENT_SKEW)}"))
    sent: dict[str, str] = {}
    offset = 0
    while True:
        page = await svc.search("Communication", [*query, *([("_offset", str(offset))] if offset else [])])
        for comm in _match(page):
            for ref in comm.get("inResponseTo") or []:
                sent.setdefault(ref.get("reference"), payload_text(comm))  # the newest reply, if several
        if not _has_next(page):
            return sent
        offset += REPLIES_PAGE


async def reply(svc: FhirService, referral_id: str, text: str, now: datetime) -> None:
    """The authority's `referral-outcome` reply to a referral Communication addressed to it."""
    text = text.strip()
    if not text or len(text) > REPLY_MAX:
        raise Unprocessable(f"Write the outcome (at most {REPLY_MAX} characters)", msg_id="SF-1705",
                            expression="text")
    referral = (await svc.read("Communication", referral_id)).content
    comm: dict[str, Any] = {
        "resourceType": "Communication", "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": CommunicationCategory.REFERRAL_OUTCOME}]}],
        "inResponseTo": [{"reference": f"Communication/{referral_id}"}],
        "sent": format_instant(now), "payload": [{"contentString": text}],
    }
    for key in ("subject",):
        if isinstance(referral.get(key), dict):
            comm[key] = referral[key]
    if isinstance(referral.get("sender"), dict):
        comm["recipient"] = [referral["sender"]]
    if svc.principal is not None and svc.principal.org:
        comm["sender"] = {"reference": svc.principal.org}
    await svc.create("Communication", comm)
