"""A scripted month (January 2026) for the governance report: every record written through the service
at a chosen time (the StepClock is set before each write), notifications delivered at chosen offsets,
and the figures the report must give for it, worked out by hand in EXPECTED.

Organisations: the ED (`ed`), two 0-19 providers (`hv0` with a health visitor and a safeguarding lead,
`sn0` with a school nurse) and the local authority (`la`). As of 2026-02-03T12:00:00Z.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from app.context import AppContext
from app.safeguarding.lookup import Lookup
from app.storage.notify_tables import notification
from app.storage.repository import utc_ms
from tests.conftest import FHIR, StepClock
from tests.notify.ed_data import (
    care_team,
    child,
    encounter,
    flag,
    organization,
    practitioner,
    practitioner_role,
)
from tests.referrals.support import CS, attachment, copy, qa_task, reason

AS_OF = datetime(2026, 2, 3, 12, 0, 0, tzinfo=UTC)
DNW = "1066301000000103"
COMM = CS + "safeguarding-communication-category"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


class Month:
    def __init__(self, ctx: AppContext, clock: StepClock) -> None:
        self.ctx, self.clock = ctx, clock
        self.event = 0

    async def write(self, when: str, rtype: str, rid: str | None, content: dict[str, Any]) -> str:
        """Create (or update, with an id) one resource as the server's own work, stored at `when`."""
        self.clock.reset(at(when) - timedelta(seconds=1))
        async with self.ctx.unit_of_work() as svc:
            if rid is None:
                outcome = await svc.create(rtype, content)
            else:
                outcome = await svc.update(rtype, rid, {**content, "id": rid})
            assert outcome.stored is not None
            return f"{rtype}/{outcome.stored.id}"

    async def change(self, when: str, ref: str, **changes: Any) -> None:
        self.clock.reset(at(when) - timedelta(seconds=1))
        async with self.ctx.unit_of_work() as svc:
            rtype, _, rid = ref.partition("/")
            current = await svc.read(rtype, rid)
            assert (await svc.update(rtype, rid, {**current.content, **changes})).status == 200

    async def attendance(self, when: str, patient: str, *, dnw: bool = False,
                         delivered: tuple[float, ...] = (), pending: int = 0) -> tuple[str, str]:
        """An ED attendance -> (its notice, the notice's acknowledge Task); notifications delivered
        `delivered` seconds after the notice was sent (one row per subscription), `pending` undelivered."""
        enc = encounter({"reference": patient}, "Organization/ed", start=when,
                        disposition=DNW if dnw else None)
        ref = await self.write(when, "Encounter", None, enc)
        async with self.ctx.unit_of_work() as svc:
            lookup = Lookup(svc.session, svc.settings.fhir_base)
            [notice] = await lookup.search("Communication", [("encounter", ref)])
            [task] = await lookup.search("Task", [("focus", f"Communication/{notice.id}")])
            sent = utc_ms(at(notice.content["sent"]))
            for seconds in (*delivered, *([None] * pending)):
                self.event += 1
                await svc.session.execute(insert(notification).values(
                    sub_id=f"sub-{self.event % 2}", event_number=self.event, focus_type="Communication",
                    focus_id=notice.id, focus_version=1, action="create", occurred_at=sent, matched_at=sent,
                    delivered_at=None if seconds is None else sent + timedelta(seconds=seconds), attempts=1))
        return f"Communication/{notice.id}", f"Task/{task.id}"

    async def access(self, when: str, patient: str) -> None:
        await self.write(when, "Communication", None, {
            "resourceType": "Communication", "status": "completed",
            "category": [{"coding": [{"system": COMM, "code": "access-notification"}]}],
            "subject": {"reference": patient}, "recipient": [{"reference": "Organization/la"}], "sent": when,
            "payload": [{"contentString": "Looked up in ED"}]})

    async def flag_by(self, when: str, patient: str, category: str, author: str, org: str | None = None) -> None:
        content = flag(patient, category, author) if category != "exploitation-risk" else {
            **flag(patient, "child-protection-plan", author),
            "category": [{"coding": [{"system": CS + "safeguarding-flag-category", "code": category}]}],
            "code": {"coding": [{"system": CS + "safeguarding-flag-category", "code": category}]}}
        if org is None:
            await self.write(when, "Flag", None, content)
            return
        self.clock.reset(at(when) - timedelta(seconds=1))  # as written by a token of `org`
        async with self.ctx.unit_of_work() as svc:
            await svc.repo.create("Flag", content, org=org)


async def script(ctx: AppContext, clock: StepClock) -> None:
    m = Month(ctx, clock)
    for rid, name, role in (("ed", "St Example ED", "emergency-department"),
                            ("hv0", "Northgate 0-19 Service", "zero-to-nineteen-service"),
                            ("sn0", "Southgate 0-19 Service", "zero-to-nineteen-service"),
                            ("la", "Example Borough MASH", "local-authority-mash")):
        await m.write("2025-12-01T09:00:00Z", "Organization", rid, organization(name, role))
    for rid in ("pr-hv", "pr-lead", "pr-sn", "pr-loose"):
        await m.write("2025-12-01T09:00:00Z", "Practitioner", rid, practitioner(rid))
    await m.write("2025-12-01T09:00:00Z", "PractitionerRole", "hv", practitioner_role(
        "Practitioner/pr-hv", "Organization/hv0", "health-visitor"))
    await m.write("2025-12-01T09:00:00Z", "PractitionerRole", "lead", practitioner_role(
        "Practitioner/pr-lead", "Organization/hv0", "safeguarding-lead"))
    await m.write("2025-12-01T09:00:00Z", "PractitionerRole", "sn", practitioner_role(
        "Practitioner/pr-sn", "Organization/sn0", "school-nurse"))
    await m.write("2025-12-01T09:00:00Z", "Patient", "c1", child("9990000018", "2024-06-01"))
    await m.write("2025-12-01T09:00:00Z", "Patient", "c2", child("9990000026", "2015-01-01", "Organization/sn0"))
    await m.write("2025-12-01T09:00:00Z", "Patient", "c3", child("9990000034", "2019-03-03"))
    await m.write("2025-12-01T09:00:00Z", "CareTeam", "t1", care_team("Patient/c1", ("health-visitor",
                                                                                     "PractitionerRole/hv")))

    # ED notices (sender the ED; c1 -> the health visitor, c2 -> sn0, c3 routed nowhere)
    await m.attendance("2025-12-29T09:00:00Z", "Patient/c1", delivered=(1,))  # December: not counted
    _, t1 = await m.attendance("2026-01-05T09:00:00Z", "Patient/c1", delivered=(3, 7))  # due 01-12
    await m.change("2026-01-08T10:00:00Z", t1, status="completed")  # on time
    _, t2 = await m.attendance("2026-01-14T09:00:00Z", "Patient/c1", delivered=(10,))  # due 01-21
    await m.change("2026-01-22T09:00:00Z", t2, status="completed")  # late
    await m.attendance("2026-01-16T17:00:00Z", "Patient/c2", dnw=True, delivered=(2,), pending=1)  # urgent, overdue
    await m.attendance("2026-01-20T12:00:00Z", "Patient/c3")  # unrouted, due 01-27: overdue
    _, t7 = await m.attendance("2026-01-29T09:00:00Z", "Patient/c2", delivered=(6,))  # due 02-05
    await m.change("2026-01-30T09:00:00Z", t7, status="completed")  # done before due
    await m.attendance("2026-01-30T09:00:00Z", "Patient/c1", delivered=(4,))  # due 02-06: not yet due
    await m.attendance("2026-02-02T09:00:00Z", "Patient/c1", delivered=(1,))  # February: not counted

    # referral copies and their reviews
    lead = "PractitionerRole/lead"
    c1 = await m.write("2026-01-06T10:00:00Z", "DocumentReference", None, copy(
        "Patient/c1", author="PractitionerRole/hv", custodian="Organization/hv0", date="2026-01-06T10:00:00Z"))
    await m.write("2026-01-08T10:00:00Z", "Task", None, qa_task(c1, "Patient/c1", lead, "clear-and-complete"))
    c2 = await m.write("2026-01-10T12:00:00Z", "DocumentReference", None, copy(
        "Patient/c1", custodian="Organization/hv0", date="2026-01-10T12:00:00Z"))
    review = await m.write("2026-01-11T09:00:00Z", "Task", None, qa_task(c2, "Patient/c1", lead, None, "in-progress"))
    await m.change("2026-01-13T00:00:00Z", review, status="completed", output=qa_task(
        c2, "Patient/c1", lead, "incomplete-information")["output"])  # 2.5 days after the copy's date
    await m.write("2026-01-20T08:00:00Z", "DocumentReference", None, copy(
        "Patient/c1", custodian="Organization/hv0", date="2026-01-20T08:00:00Z"))  # not reviewed
    c4 = await m.write("2026-01-25T00:00:00Z", "DocumentReference", None, copy(
        "Patient/c2", custodian="Organization/sn0", date="2026-01-25T00:00:00Z"))
    await m.write("2026-02-01T00:00:00Z", "Task", None, qa_task(c4, "Patient/c2", lead, "escalated"))  # 7 days
    late = await m.write("2026-01-26T00:00:00Z", "DocumentReference", None, copy(
        "Patient/c2", custodian="Organization/sn0", date="2026-01-26T00:00:00Z"))
    await m.write("2026-02-05T00:00:00Z", "Task", None, qa_task(late, "Patient/c2", lead))  # after AS_OF
    wrong = await m.write("2026-01-28T00:00:00Z", "DocumentReference", None, copy(
        "Patient/c1", custodian="Organization/hv0", date="2026-01-28T00:00:00Z"))
    await m.change("2026-01-28T01:00:00Z", wrong, status="entered-in-error", extension=[reason()])
    old = await m.write("2026-01-15T00:00:00Z", "DocumentReference", None, copy(
        "Patient/c1", custodian="Organization/hv0", date="2026-01-15T00:00:00Z"))
    await m.write("2026-01-16T09:00:00Z", "DocumentReference", None, copy(
        "Patient/c1", custodian="Organization/hv0", date="2026-01-16T09:00:00Z", att=attachment(b"corrected"),
        relatesTo=[{"code": "replaces", "target": {"reference": old}}]))  # the old one is superseded
    await m.write("2025-12-30T00:00:00Z", "DocumentReference", None, copy(
        "Patient/c1", custodian="Organization/hv0", date="2025-12-30T00:00:00Z"))  # December

    # access notifications to the local authority
    await m.access("2026-01-07T11:00:00Z", "Patient/c1")
    await m.access("2026-01-21T11:00:00Z", "Patient/c2")
    await m.access("2026-02-01T11:00:00Z", "Patient/c2")  # February

    # flags raised
    await m.flag_by("2025-12-20T09:00:00Z", "Patient/c3", "child-protection-plan", "Organization/la")  # December
    await m.flag_by("2026-01-03T09:00:00Z", "Patient/c1", "child-protection-plan", "Organization/la")
    await m.flag_by("2026-01-12T09:00:00Z", "Patient/c2", "exploitation-risk", "PractitionerRole/hv")
    await m.flag_by("2026-01-18T09:00:00Z", "Patient/c2", "child-protection-plan", "Organization/la")
    await m.flag_by("2026-01-19T09:00:00Z", "Patient/c3", "exploitation-risk", "Practitioner/pr-sn")
    await m.flag_by("2026-01-23T09:00:00Z", "Patient/c2", "looked-after-child", "Practitioner/pr-loose",
                    org="Organization/la")  # a person of no role: the writing token's organisation


UNROUTED_LIST = FHIR + "/Task?owner:missing=true&code=acknowledge"


def _org(ref: str, name: str, **figures: float) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"name": "organization", "valueReference": {"reference": ref, "display": name}}]
    for k, v in figures.items():
        parts.append({"name": k.replace("_", "-"), ("valueDecimal" if isinstance(v, float) else "valueInteger"): v})
        if k == "ed_unrouted" and v:  # the figure links to the list of the notices' owner-less Tasks
            parts.append({"name": "ed-unrouted-list", "valueUri": UNROUTED_LIST})
    return {"name": "organization", "part": parts}


ZERO = {"referral_copies": 0}
QUIET_ED = {"ed_notifications": 0, "ed_overdue": 0, "ed_unrouted": 0}
# Worked out by hand from the script above (contract section 6 names, in its order).
EXPECTED: dict[str, Any] = {"resourceType": "Parameters", "parameter": [
    _org("Organization/ed", "St Example ED", **ZERO, ed_notifications=6,
         ed_delivery_median_seconds=4.0, ed_delivery_p95_seconds=10.0,  # [2, 3, 4, 6, 10]
         ed_acknowledged_on_time_share=0.4,  # of 5 due or done (not the one due 02-06): 2 on time
         ed_overdue=2, ed_unrouted=1, access_notifications=0),
    _org("Organization/hv0", "Northgate 0-19 Service", referral_copies=4, referral_qa_share=0.5,
         referral_qa_median_days=2.25,  # [2.0, 2.5]
         ed_notifications=3, ed_delivery_median_seconds=4.0, ed_delivery_p95_seconds=10.0,  # [3, 4, 10]
         ed_acknowledged_on_time_share=0.5, ed_overdue=0, ed_unrouted=0, access_notifications=0,
         **{"referral-qa-outcome-clear-and-complete": 1, "referral-qa-outcome-incomplete-information": 1,
            "flags-exploitation-risk": 1}),
    _org("Organization/la", "Example Borough MASH", **ZERO, **QUIET_ED, access_notifications=2,
         **{"flags-child-protection-plan": 2, "flags-looked-after-child": 1}),
    _org("Organization/sn0", "Southgate 0-19 Service", referral_copies=2, referral_qa_share=0.5,
         referral_qa_median_days=7.0,  # the copy dated 01-26 is reviewed only after AS_OF
         ed_notifications=2, ed_delivery_median_seconds=4.0, ed_delivery_p95_seconds=6.0,  # [2, 6]
         ed_acknowledged_on_time_share=0.5, ed_overdue=1, ed_unrouted=0, access_notifications=0,
         **{"referral-qa-outcome-escalated": 1, "flags-exploitation-risk": 1}),
]}
