"""Governance figures for one month (`GET /fhir/$governance-report`, `safeflag report`):
a Parameters resource (https://hl7.org/fhir/R4/parameters.html) with one `organization` parameter per
provider organisation. Every figure is computed from stored data, as of `now`:

- `referral-copies`: mash-referral DocumentReferences whose `date` falls in the month and whose status
  is `current` (a superseded copy counts through the correction that replaced it; entered-in-error ones
  not at all). `referral-qa-share`: the share of those with a completed `referral-qa` Task;
  `referral-qa-median-days`: median days from the copy's `date` to that review (the first version of
  the Task stored `completed`); `referral-qa-outcome-<code>`: how many first reviews gave each outcome.
- `ed-notifications`: ed-attendance, did-not-wait and think-family Communications `sent` in the month
  (not entered-in-error); `ed-delivery-median-seconds` / `-p95-seconds`: from the notice's `sent` to
  the first `delivered_at` of its subscription notifications (notices never delivered are left out;
  p95 by nearest rank); `ed-acknowledged-on-time-share`: over the notices' acknowledge Tasks whose due
  time (`restriction.period.end`) has passed or that are completed, the share completed by the due
  time; `ed-overdue`: those Tasks still open with the due time passed; `ed-unrouted`: notices routed
  to no health visitor, school nurse or team (tagged with an unrouted reason, even when they went to
  the ED's safeguarding lead, or with no recipient), followed when above 0 by `ed-unrouted-list`
  (valueUri): the search that lists the acknowledgement Tasks nobody owns.
- `access-notifications`: access-notification Communications `sent` in the month.
- `flags-<category>`: Flags first stored in the month, per `safeguarding-flag-category` code (not
  entered-in-error), only categories with at least one.
A record counts for every organisation it is "of" (as the access policy reads "of", app/security/policy.py): the one whose token wrote it,
and those it names (directly or through a PractitionerRole/Practitioner/CareTeam) as author, custodian,
sender or recipient; so a notice counts for the ED that sent it and the team that received it. Counts
are valueInteger; shares (0..1, 4 places), days (2 places) and seconds (3 places) valueDecimal, left out
when there is nothing to compute them from.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import BadRequest
from app.safeguarding.referral_rules import DOC_TYPE, QA_OUTCOME, TASK_CODE, codes
from app.safeguarding.report_data import ReportData, Row, instant
from app.safeguarding.tasks import due_of
from app.safeguarding.unrouted import UNROUTED_LIST, is_unrouted
from app.storage import buffer
from app.storage.repository import utc_ms
from app.vocabulary import COMMUNICATION_CATEGORY as COMM_CATEGORY
from app.vocabulary import FLAG_CATEGORY, CommunicationCategory, DocumentType, TaskCode

ED_CATEGORIES = (CommunicationCategory.ED_ATTENDANCE, CommunicationCategory.DID_NOT_WAIT,
                 CommunicationCategory.THINK_FAMILY)
NOT_DONE = frozenset({"cancelled", "rejected", "failed", "entered-in-error"})
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
Number = int | float | None


def month_range(month: str) -> tuple[datetime, datetime]:
    m = _MONTH.match(month.strip())
    if not m:
        raise BadRequest(f"month must be YYYY-MM (e.g. 2026-01), not '{month}'", msg_id="SF-0951", code="value",
                         expression="month")
    year, mon = int(m.group(1)), int(m.group(2))
    return datetime(year, mon, 1), datetime(year + mon // 12, mon % 12 + 1, 1)


def median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile: the smallest value with at least 95 % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None, places: int) -> float | None:
    return None if value is None else round(value, places)


@dataclass
class Tally:
    """The raw material of one organisation's figures (or of all records, for the trend chart)."""

    copies: int = 0
    reviewed: int = 0
    review_days: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    notices: int = 0
    delivery: list[float] = field(default_factory=list)
    ack_due: int = 0
    ack_on_time: int = 0
    overdue: int = 0
    unrouted: int = 0
    access: int = 0
    flags: Counter[str] = field(default_factory=Counter)

    def figures(self) -> dict[str, Number]:
        """The fixed figures in their published order (docs/api/referrals.md), then the per-code figures."""
        out: dict[str, Number] = {
            "referral-copies": self.copies,
            "referral-qa-share": _share(self.reviewed, self.copies),
            "referral-qa-median-days": _round(median(self.review_days), 2),
            "ed-notifications": self.notices,
            "ed-delivery-median-seconds": _round(median(self.delivery), 3),
            "ed-delivery-p95-seconds": _round(p95(self.delivery), 3),
            "ed-acknowledged-on-time-share": _share(self.ack_on_time, self.ack_due),
            "ed-overdue": self.overdue,
            "ed-unrouted": self.unrouted,
            "access-notifications": self.access,
        }
        out |= {f"referral-qa-outcome-{c}": n for c, n in sorted(self.outcomes.items())}
        out |= {f"flags-{c}": n for c, n in sorted(self.flags.items())}
        return out


@dataclass
class Report:
    month: str
    as_of: datetime
    organizations: dict[str, Tally]
    total: Tally
    names: dict[str, str]
    unrouted_list: str = UNROUTED_LIST  # absolute: the server's base first


class _Builder:
    def __init__(self, data: ReportData, organization: str | None) -> None:
        self.data = data
        self.only = organization
        self.tallies: dict[str, Tally] = {organization: Tally()} if organization else {}
        self.total = Tally()

    async def add(self, row: Row, refs: list[Any], change: Callable[[Tally], None]) -> None:
        orgs = await self.data.organisations(refs, row.created_by_org)
        mine = [o for o in sorted(orgs) if self.only in (None, o)]
        for org in mine:
            change(self.tallies.setdefault(org, Tally()))
        if self.only is None or mine:  # the total counts each record once (and those of no organisation)
            change(self.total)


async def _referral_copies(b: _Builder, start: datetime, end: datetime, now: datetime) -> None:
    copies = await b.data.between("DocumentReference", [("type", f"{DOC_TYPE}|{DocumentType.MASH_REFERRAL}"),
                                                         ("status", "current")], "date", start, end)
    tasks = await b.data.referring("Task", [("code", f"{TASK_CODE}|{TaskCode.REFERRAL_QA}"), ("status", "completed")],
                                   "focus", "DocumentReference", [row.id for row, _ in copies])
    done = await b.data.first_completed([t.id for t in tasks])
    first: dict[str, tuple[datetime, Row]] = {}
    for task in tasks:
        at = done.get(task.id)
        doc = ((task.content.get("focus") or {}).get("reference") or "").rpartition("/")[2]
        if at is not None and at <= now and (doc not in first or at < first[doc][0]):
            first[doc] = (at, task)
    for row, dated in copies:
        review = first.get(row.id)

        def change(t: Tally, review: tuple[datetime, Row] | None = review, dated: datetime = dated) -> None:
            t.copies += 1
            if review is not None:
                t.reviewed += 1
                t.review_days.append((review[0] - dated).total_seconds() / 86400)
                for out in review[1].content.get("output") or []:
                    for code in codes(out.get("valueCodeableConcept"), QA_OUTCOME):
                        t.outcomes[code] += 1

        await b.add(row, [row.content.get("custodian"), *(row.content.get("author") or [])], change)


async def _notices(b: _Builder, start: datetime, end: datetime, now: datetime) -> None:
    cats = ",".join(f"{COMM_CATEGORY}|{c}" for c in ED_CATEGORIES)
    notices = [(r, at) for r, at in await b.data.between("Communication", [("category", cats)], "sent", start, end)
               if r.content.get("status") != "entered-in-error"]
    ids = [r.id for r, _ in notices]
    delivered = await b.data.first_delivered(ids)
    acks = await b.data.referring("Task", [("code", f"{TASK_CODE}|{TaskCode.ACKNOWLEDGE}")], "focus", "Communication", ids)
    done = await b.data.first_completed([t.id for t in acks if t.content.get("status") == "completed"])
    by_notice: dict[str, list[Row]] = {}
    for task in acks:
        by_notice.setdefault(((task.content.get("focus") or {}).get("reference") or "").rpartition("/")[2],
                             []).append(task)
    for row, sent in notices:
        at = delivered.get(row.id)
        seconds = (at - sent).total_seconds() if at is not None and at <= now else None
        states = []
        for task in by_notice.get(row.id, []):
            due = instant(due_of(task.content))
            finished = done.get(task.id)
            finished = finished if finished is not None and finished <= now else None
            open_now = finished is None and task.content.get("status") not in NOT_DONE
            states.append((due, finished, open_now))

        def change(t: Tally, row: Row = row, seconds: float | None = seconds,
                   states: list[tuple[datetime | None, datetime | None, bool]] = states) -> None:
            t.notices += 1
            t.unrouted += 1 if is_unrouted(row.content) else 0
            if seconds is not None:
                t.delivery.append(seconds)
            for due, finished, open_now in states:
                passed = due is not None and due < now
                if finished is not None or passed:
                    t.ack_due += 1
                    t.ack_on_time += 1 if finished is not None and due is not None and finished <= due else 0
                t.overdue += 1 if open_now and passed else 0

        await b.add(row, [row.content.get("sender"), *(row.content.get("recipient") or [])], change)


async def _access(b: _Builder, start: datetime, end: datetime) -> None:
    category = f"{COMM_CATEGORY}|{CommunicationCategory.ACCESS_NOTIFICATION}"
    found = await b.data.between("Communication", [("category", category)], "sent", start, end)
    for row, _ in found:
        if row.content.get("status") == "entered-in-error":
            continue

        def change(t: Tally) -> None:
            t.access += 1

        await b.add(row, [row.content.get("sender"), *(row.content.get("recipient") or [])], change)


async def _flags(b: _Builder, start: datetime, end: datetime) -> None:
    for row, _ in await b.data.created_between("Flag", [], start, end):
        cats = sorted(codes(row.content.get("category"), FLAG_CATEGORY))
        if not cats or row.content.get("status") == "entered-in-error":
            continue

        def change(t: Tally, cats: list[str] = cats) -> None:
            for cat in cats:
                t.flags[cat] += 1

        await b.add(row, [row.content.get("author")], change)


async def governance_report(
    session: AsyncSession, base: str, month: str, organization: str | None, now: datetime
) -> Report:
    """The month's figures per organisation (only `organization`, always present, when given)."""
    start, end = month_range(month)
    now = utc_ms(now)
    await buffer.flush(session)  # what this transaction queued (its audit rows) counts too
    data = ReportData(session, base)
    b = _Builder(data, organization)
    await _referral_copies(b, start, end, now)
    await _notices(b, start, end, now)
    await _access(b, start, end)
    await _flags(b, start, end)
    return Report(month, now, dict(sorted(b.tallies.items())), b.total, await data.names(b.tallies),
                  f"{base}/{UNROUTED_LIST}")


def _part(name: str, value: float) -> dict[str, Any]:
    return {"name": name, ("valueDecimal" if isinstance(value, float) else "valueInteger"): value}


def to_parameters(report: Report) -> dict[str, Any]:
    """The report as a Parameters resource: one `organization` part per provider organisation."""
    params = []
    for org, tally in report.organizations.items():
        ref: dict[str, Any] = {"reference": org}
        if org in report.names:
            ref["display"] = report.names[org]
        parts = [{"name": "organization", "valueReference": ref}]
        for name, value in tally.figures().items():
            if value is not None:
                parts.append(_part(name, value))
            if name == "ed-unrouted" and value:
                parts.append({"name": "ed-unrouted-list", "valueUri": report.unrouted_list})
        params.append({"name": "organization", "part": parts})
    out: dict[str, Any] = {"resourceType": "Parameters"}
    if params:
        out["parameter"] = params
    return out


def to_rows(report: Report) -> list[dict[str, Number | str]]:
    """`safeflag report --format json`: one object per organisation, with the same names."""
    return [{"organization": org, **tally.figures()} for org, tally in report.organizations.items()]
