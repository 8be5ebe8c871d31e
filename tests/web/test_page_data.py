"""What the pages show and do, in process on both databases: each page's data is the signed-in user's
own FHIR interactions (policy, withheld notice, audit), and each form is a write through the engine."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.context import AppContext
from app.demo import borough as b
from app.errors import BadRequest, Forbidden, NotFound, PreconditionFailed, Unprocessable
from app.safeguarding import summary
from app.safeguarding.escalation import escalate_overdue
from app.storage.audit_tables import audit_event
from app.vocabulary import COMMUNICATION_CATEGORY, FLAG_CATEGORY, TASK_CODE
from app.web import desk, notice, notices
from tests.conftest import StepClock
from tests.web.pages_data import (
    HV,
    LEAD,
    MASH,
    OTHER,
    OTHER_HV,
    RESTRICTED,
    SEXUAL_HEALTH,
    attend,
    ed,
    principal,
    seed,
)

Auth = Any


@pytest.fixture
async def borough(client: httpx.AsyncClient, clock: StepClock) -> httpx.AsyncClient:
    await seed(client, clock.now().date())
    return client


async def audit_count(ctx: AppContext) -> int:
    async with ctx.sessionmaker() as s:
        rows = (await s.execute(select(audit_event.c.event_id))).all()
    return len(rows)


async def inbox(ctx: AppContext, who: Any, clock: StepClock, *, team: bool = False) -> notices.Listing:
    async with ctx.unit_of_work(who) as svc:
        owners = notices.team_refs(svc) if team else notices.own_refs(svc)
        return await notices.open_notices(svc, owners, clock.now())


async def test_the_health_visitors_inbox_shows_her_open_notice_urgent_first(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await attend(borough, ed(auth), "2026-01-05T08:30:00Z")
    r = await borough.post("/fhir/Flag", json=b.plan_flag(clock.now().date()))
    assert r.status_code == 201, r.text
    await attend(borough, ed(auth), "2026-01-05T09:15:00Z")  # with a plan: urgent
    before = await audit_count(clean_ctx)
    listing = await inbox(clean_ctx, HV, clock)
    assert await audit_count(clean_ctx) == before + 1  # the page view is one audited search
    assert [(n.priority, n.label, n.child_name, n.nhs_masked, n.age) for n in listing.rows] == [
        ("urgent", "ED attendance", "Casey Demo", "*** *** 0166", "23 months"),
        ("routine", "ED attendance", "Casey Demo", "*** *** 0166", "23 months"),
    ]
    first = listing.rows[0]
    assert first.attended == "5 January 2026, 09:15 GMT"
    assert first.place == "Demo General Hospital Emergency Department"  # the notice's sender
    assert first.reason == "Contusion"  # from the notice: the ED's Encounter is not hers to read
    assert (first.overdue, first.escalated, listing.withheld) == (False, False, None)
    assert first.due == "6 January 2026, 09:0" + first.due[-5] + " GMT"  # one working day after it arrived
    lead = await inbox(clean_ctx, LEAD, clock, team=True)
    assert [(n.attended, n.place, n.reason) for n in lead.rows] == [
        ("5 January 2026, 09:15 GMT", "Demo General Hospital Emergency Department", "Contusion"),
        ("5 January 2026, 08:30 GMT", "Demo General Hospital Emergency Department", "Contusion")]


async def test_acknowledging_completes_her_task_and_it_leaves_her_list_and_the_leads(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await attend(borough, ed(auth), "2026-01-05T08:30:00Z")
    [row] = (await inbox(clean_ctx, HV, clock)).rows
    assert [n.task_id for n in (await inbox(clean_ctx, LEAD, clock, team=True)).rows] == [row.task_id]
    async with clean_ctx.unit_of_work(HV) as svc:
        await notice.acknowledge(svc, row.task_id, str(row.version), "  Called mum, seen at clinic  ", clock.now())
    task = (await borough.get(f"/fhir/Task/{row.task_id}")).json()
    assert task["status"] == "completed"
    assert task["statusReason"] == {"text": "Called mum, seen at clinic"}
    assert (await inbox(clean_ctx, HV, clock)).rows == []
    assert (await inbox(clean_ctx, LEAD, clock, team=True)).rows == []


async def test_a_stale_acknowledgement_is_refused_and_changes_nothing(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await attend(borough, ed(auth), "2026-01-05T08:30:00Z")
    [row] = (await inbox(clean_ctx, HV, clock)).rows
    with pytest.raises(PreconditionFailed) as exc:
        async with clean_ctx.unit_of_work(HV) as svc:
            await notice.acknowledge(svc, row.task_id, str(row.version + 1), "", clock.now())
    assert exc.value.status == 412 and exc.value.issues[0].msg_id == "SF-0413"
    with pytest.raises(Unprocessable) as bad:
        async with clean_ctx.unit_of_work(HV) as svc:
            await notice.acknowledge(svc, row.task_id, "1 OR 1", "", clock.now())
    assert bad.value.issues[0].msg_id == "SF-1701" and bad.value.issues[0].expression == ("version",)
    assert (await borough.get(f"/fhir/Task/{row.task_id}")).json()["status"] == "requested"


async def test_the_notice_page_counts_all_the_childs_open_acknowledgements_beyond_the_summarys_newest(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's summary holds her newest open acknowledgements (OPEN_LIMIT of them); the page, which
    shows only how many she has, counts them all, so it never says fewer than there are."""
    monkeypatch.setattr(summary, "OPEN_LIMIT", 2)
    for start in ("2026-01-05T08:30:00Z", "2026-01-05T09:15:00Z"):
        await attend(borough, ed(auth), start)
    rows = (await inbox(clean_ctx, HV, clock)).rows
    async with clean_ctx.unit_of_work(HV) as svc:
        assert (await notice.notice_page(svc, rows[0].task_id, clock.now())).open_tasks == 2
    await attend(borough, ed(auth), "2026-01-05T10:00:00Z")
    async with clean_ctx.unit_of_work(HV) as svc:
        assert (await notice.notice_page(svc, rows[0].task_id, clock.now())).open_tasks == 3
    # another organisation's open acknowledgement on the same child is not hers to read: not counted
    other = {"resourceType": "Task", "status": "requested", "intent": "order",
             "code": {"coding": [{"system": TASK_CODE, "code": "acknowledge"}]}, "for": {"reference": b.CHILD},
             "owner": {"reference": OTHER_HV}, "authoredOn": "2026-01-05T11:00:00Z",
             "focus": (await borough.get(f"/fhir/Task/{rows[0].task_id}")).json()["focus"]}
    r = await borough.post("/fhir/Task", json=other)
    assert r.status_code == 201, r.text
    async with clean_ctx.unit_of_work(HV) as svc:
        assert (await notice.notice_page(svc, rows[0].task_id, clock.now())).open_tasks == 3


async def test_another_organisations_health_visitor_cannot_open_the_notice(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await attend(borough, ed(auth), "2026-01-05T08:30:00Z")
    [row] = (await inbox(clean_ctx, HV, clock)).rows
    with pytest.raises(NotFound) as exc:
        async with clean_ctx.unit_of_work(OTHER) as svc:
            await notice.notice_page(svc, row.task_id, clock.now())
    assert exc.value.status == 404
    assert exc.value.issues[0].diagnostics == f"Task/{row.task_id} is not known"
    assert (await inbox(clean_ctx, OTHER, clock)).rows == []


async def test_the_notice_page_withholds_a_restricted_flag_with_the_notice_and_the_lead_sees_it(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    sh = auth("sexual-health-clinician", org=SEXUAL_HEALTH)
    flag = {**b.plan_flag(clock.now().date()), "author": {"reference": SEXUAL_HEALTH},
            "category": [b.coding(FLAG_CATEGORY, "exploitation-risk")],
            "code": {"coding": [{"system": FLAG_CATEGORY, "code": "exploitation-risk"}]},
            "meta": {"security": [RESTRICTED]}}
    r = await borough.post("/fhir/Flag", json=flag, headers=sh)
    assert r.status_code == 201, r.text
    await attend(borough, ed(auth), "2026-01-05T08:30:00Z")
    [row] = (await inbox(clean_ctx, HV, clock)).rows
    # a Task about the child that she may not read (restricted as the clinic wrote it): her list of notices
    # carries the search's information entry as its notice, without its message id; the lead's none
    task = {"resourceType": "Task", "status": "requested", "intent": "order", "meta": {"security": [RESTRICTED]},
            "for": {"reference": f"Patient/{row.child_id}"}, "owner": {"reference": b.ZERO19}}
    r = await borough.post("/fhir/Task", json=task, headers=auth("system", org=SEXUAL_HEALTH))
    assert r.status_code == 201, r.text
    listing = await inbox(clean_ctx, HV, clock)
    assert [n.task_id for n in listing.rows] == [row.task_id] and listing.withheld == (
        "Restricted records about the patient(s) of this search were withheld from this result. Restricted "
        "records are visible only to safeguarding leads and to the organisation that wrote them; ask your "
        "safeguarding lead if you need to know what they hold")
    assert (await inbox(clean_ctx, LEAD, clock, team=True)).withheld is None
    async with clean_ctx.unit_of_work(HV) as svc:
        page = await notice.notice_page(svc, row.task_id, clock.now())
    assert page.flags == []
    assert page.withheld is not None and page.withheld.startswith("Restricted records about the patient(s)")
    assert page.notice.nhs == "999 000 0166" and page.child_name == "Casey Demo"
    assert (page.notice.place, page.notice.owner, page.notice.attended, page.birth) == (
        "Demo General Hospital Emergency Department", "Hana Visitor", "5 January 2026, 08:30 GMT", "15 January 2024")
    assert page.text == "ED attendance on 5 January 2026, 08:30 GMT (routed to the child's care team)"  # no ISO time
    async with clean_ctx.unit_of_work(LEAD) as svc:
        lead_page = await notice.notice_page(svc, row.task_id, clock.now())
    assert [f.label for f in lead_page.flags] == ["Exploitation risk"] and lead_page.withheld is None


async def test_an_overdue_notice_is_escalated_onto_the_leads_desk(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await attend(borough, ed(auth), "2026-01-05T08:30:00Z")
    [row] = (await inbox(clean_ctx, HV, clock)).rows
    clock.reset(clock.current + timedelta(days=8))  # past the routine five working days
    assert await escalate_overdue(clean_ctx, clock.now()) == 1
    team = await inbox(clean_ctx, LEAD, clock, team=True)
    assert [(n.task_id, n.overdue, n.escalated, n.owner) for n in team.overdue] == [
        (row.task_id, True, True, "Sam Lead")]
    assert (await inbox(clean_ctx, HV, clock)).rows == []  # it is the lead's now


@pytest.mark.parametrize(("passer", "offered"), [
    (LEAD, [("PractitionerRole/demo-hv", "Hana Visitor"), ("PractitionerRole/demo-hv2", "Harriet Second"),
            ("PractitionerRole/demo-lead", "Sam Lead")]),
    (HV, [("PractitionerRole/demo-hv2", "Harriet Second"), ("PractitionerRole/demo-lead", "Sam Lead")]),
], ids=["lead", "health-visitor"])
async def test_a_notice_is_passed_to_a_colleague_in_the_team_only(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth, passer: Any,
    offered: list[tuple[str, str]],
) -> None:
    """The lead may pass any of the team's notices to anyone of it; the health visitor passes her own to
    a colleague (herself left out); someone of another organisation is refused. It moves lists."""
    await attend(borough, ed(auth), "2026-01-05T08:30:00Z")
    [row] = (await inbox(clean_ctx, HV, clock)).rows
    async with clean_ctx.unit_of_work(passer) as svc:
        assert await notice.colleagues(svc) == offered
    with pytest.raises(Unprocessable) as exc:
        async with clean_ctx.unit_of_work(passer) as svc:
            await notice.reassign(svc, row.task_id, str(row.version), "PractitionerRole/other-hv")
    assert exc.value.issues[0].msg_id == "SF-1703"
    async with clean_ctx.unit_of_work(passer) as svc:
        await notice.reassign(svc, row.task_id, str(row.version), "PractitionerRole/demo-hv2")
    assert (await inbox(clean_ctx, HV, clock)).rows == []
    hv2 = principal("health-visitor", b.ZERO19, "PractitionerRole/demo-hv2")
    assert [n.task_id for n in (await inbox(clean_ctx, hv2, clock)).rows] == [row.task_id]
    assert (await borough.get(f"/fhir/Task/{row.task_id}")).json()["owner"] == {
        "reference": "PractitionerRole/demo-hv2"}


async def test_unrouted_notices_show_on_the_leads_desk(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    assert (await borough.delete(f"/fhir/{b.DUTY}")).status_code == 204  # no duty team: routed nowhere
    r = await borough.post("/fhir/Encounter", headers=ed(auth), json={
        **b.attendance("2026-01-05T08:30:00Z"),
        "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000182"}}})
    assert r.status_code == 201, r.text
    async with clean_ctx.unit_of_work(LEAD) as svc:
        listing = await notices.open_notices(svc, None, clock.now(), unrouted=True)
    assert [(n.child_name, n.nhs_masked, n.owner) for n in listing.rows] == [
        ("Child not matched to a record", "*** *** 0182", "Nobody (unrouted)")]


async def test_mash_sees_referral_copies_and_replies_and_the_lead_reviews_the_copy(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    r = await borough.post("/fhir", json=b.referral_copy("2026-01-05T10:00:00Z", "Referral text"), headers=ed(auth))
    assert r.status_code == 200, r.text
    async with clean_ctx.unit_of_work(MASH) as svc:
        accesses, referrals, withheld = await desk.mash_lists(svc)
    assert [(i.child, i.when, i.who) for i in referrals.items] == [
        # the sender's PractitionerRole is not the MASH's to read: the organisation holding the copy, by name
        ("Casey Demo", "5 January 2026, 10:00 GMT", "Demo General Hospital Emergency Department")]
    assert accesses.items == [] and withheld is None and referrals.items[0].reply == ""
    async with clean_ctx.unit_of_work(MASH) as svc:
        await desk.reply(svc, referrals.items[0].res_id, "Strategy meeting held; child in need plan", clock.now())
    async with clean_ctx.unit_of_work(MASH) as svc:  # the copy now shows the outcome sent
        assert [i.reply for i in (await desk.mash_lists(svc))[1].items] == ["Strategy meeting held; child in need plan"]
    replies = (await borough.get("/fhir/Communication?category=" + COMMUNICATION_CATEGORY + "|referral-outcome")).json()
    [reply] = [e["resource"] for e in replies["entry"]]
    assert reply["inResponseTo"] == [{"reference": f"Communication/{referrals.items[0].res_id}"}]
    assert reply["payload"] == [{"contentString": "Strategy meeting held; child in need plan"}]
    with pytest.raises(Unprocessable):
        async with clean_ctx.unit_of_work(MASH) as svc:
            await desk.reply(svc, referrals.items[0].res_id, "   ", clock.now())
    async with clean_ctx.unit_of_work(LEAD) as svc:  # the 0-19 lead's queue holds her organisation's copies
        queue, _ = await desk.review_queue(svc)
    assert queue == []


async def test_every_shown_referral_copy_shows_its_outcome_however_many_outcomes_were_sent(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcomes are read newest first, page after page, back to the oldest shown copy: with a page
    of two outcomes and two copies shown, the newest copy's outcome is not left out (it was, read oldest
    first one page only, once the authority had sent more outcomes than a page holds)."""
    monkeypatch.setattr(desk, "MASH_PAGE", 2)
    monkeypatch.setattr(desk, "REPLIES_PAGE", 2)
    for hour in (9, 10, 11):
        r = await borough.post("/fhir", json=b.referral_copy(f"2026-01-05T{hour:02d}:00:00Z", f"Referral {hour}"),
                               headers=ed(auth))
        assert r.status_code == 200, r.text
    async with clean_ctx.unit_of_work(MASH) as svc:
        shown = (await desk.mash_lists(svc))[1].items
    assert [i.when for i in shown] == ["5 January 2026, 11:00 GMT", "5 January 2026, 10:00 GMT"]
    comms = (await borough.get("/fhir/Communication?category=" + COMMUNICATION_CATEGORY + "|mash-referral"
                               "&_sort=sent")).json()["entry"]
    for entry in comms:  # replied to in the order they were sent: the newest copy's outcome is the newest
        async with clean_ctx.unit_of_work(MASH) as svc:
            await desk.reply(svc, entry["resource"]["id"], f"Outcome for {entry['resource']['sent'][11:13]}h",
                             clock.now())
    async with clean_ctx.unit_of_work(MASH) as svc:
        shown = (await desk.mash_lists(svc))[1].items
    assert [i.reply for i in shown] == ["Outcome for 11h", "Outcome for 10h"]


async def test_the_lead_reviews_her_teams_referral_copy_from_the_queue(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    bundle = json.loads(json.dumps(b.referral_copy("2026-01-05T10:00:00Z", "Referral text")).replace(b.ED_NURSE, b.HV))
    r = await borough.post("/fhir", json=bundle, headers=auth("health-visitor", org=b.ZERO19, practitioner=b.HV))
    assert r.status_code == 200, r.text
    async with clean_ctx.unit_of_work(LEAD) as svc:
        queue, withheld = await desk.review_queue(svc)
    assert withheld is None
    assert [(i.child_id, i.child, i.who, i.what) for i in queue] == [
        ("demo-child", "Casey Demo", "Hana Visitor", "Referral to Demo Borough MASH")]  # names, not references
    with pytest.raises(Unprocessable) as exc:
        async with clean_ctx.unit_of_work(LEAD) as svc:
            await desk.review(svc, queue[0].res_id, "fine", "")
    assert exc.value.issues[0].msg_id == "SF-1704"
    async with clean_ctx.unit_of_work(LEAD) as svc:
        await desk.review(svc, queue[0].res_id, "incomplete-information", "No parental consent recorded")
    tasks = (await borough.get(f"/fhir/Task?focus=DocumentReference/{queue[0].res_id}")).json()["entry"]
    [task] = [e["resource"] for e in tasks]
    assert (task["status"], task["owner"], task["note"]) == (
        "completed", {"reference": b.LEAD}, [{"text": "No parental consent recorded"}])
    assert task["output"][0]["valueCodeableConcept"]["coding"][0]["code"] == "incomplete-information"
    async with clean_ctx.unit_of_work(LEAD) as svc:
        assert (await desk.review_queue(svc))[0] == []


async def test_the_governance_report_draws_the_months_counts(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await attend(borough, ed(auth), "2026-01-05T08:30:00Z")
    await attend(borough, ed(auth), "2026-01-05T09:30:00Z")
    async with clean_ctx.unit_of_work(LEAD) as svc:
        [(name, figures, bars)] = await desk.governance(svc, "2026-01", clock.now())
    assert name == "Demo 0-19 Service"
    assert ("ed-notifications", 2) in figures
    assert [(bar.name, bar.value, bar.percent) for bar in bars] == [
        ("ed notifications", 2, 100), ("ed overdue", 0, 0), ("ed unrouted", 0, 0), ("referral copies", 0, 0),
        ("access notifications", 0, 0)]
    with pytest.raises(BadRequest):
        async with clean_ctx.unit_of_work(LEAD) as svc:
            await desk.governance(svc, "2026-13", clock.now())
    with pytest.raises(Forbidden):
        async with clean_ctx.unit_of_work(HV) as svc:
            await desk.governance(svc, "2026-01", clock.now())


@pytest.mark.parametrize(("at", "shown"), [(datetime(2026, 1, 14, 9, 0, tzinfo=UTC), "14 January 2026, 09:00 GMT"),
                                           (datetime(2026, 7, 1, 23, 30, tzinfo=UTC), "2 July 2026, 00:30 BST")],
                         ids=["gmt", "bst"])
async def test_mash_sees_who_looked_at_a_childs_plan_by_name_and_in_uk_time(
    borough: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth, at: datetime, shown: str
) -> None:
    """The access notification's stored text is for systems (an ISO instant, references, codes); the MASH
    page shows it with the London time (GMT in winter, BST in summer) and names, never a reference."""
    flag = {**b.plan_flag(at.date()), "author": {"reference": b.MASH}}  # the MASH's own plan flag
    r = await borough.post("/fhir/Flag", json=flag, headers=auth("admin"))
    assert r.status_code == 201, r.text
    clock.reset(at)
    r = await borough.get("/fhir/Flag", params={"patient": b.CHILD}, headers=ed(auth))  # unscheduled care
    assert r.status_code == 200, r.text
    async with clean_ctx.unit_of_work(MASH) as svc:
        accesses, _referrals, withheld = await desk.mash_lists(svc)
    assert withheld is None
    assert [(a.child, a.when, a.who, a.what) for a in accesses.items] == [(
        "Casey Demo", shown, "Demo General Hospital Emergency Department",
        "Safeguarding flags owned by Demo Borough MASH were viewed in unscheduled care. Who: a "
        "practitioner of Demo General Hospital Emergency Department. Where: Emergency department. "
        f"When: {shown}. Which flags: child-protection-plan.")]
    assert not re.search(r"\d{4}-\d{2}-\d{2}T|[A-Z][a-z]+/[a-z]", " ".join(vars(accesses.items[0]).values()))
