"""The full lists of the pages in process, on both databases: her overdue list holds exactly her notices
past their due time (the others are not on it, and her home page tags the overdue one), in UK form; the
lead's desk reads no owners for its unrouted notices, nor the senders of notices whose attendance names
its provider, and shows each card as it is now; the MASH page
reads no recipients for its referral copies, and does not count a full list."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import event, select

from app.context import AppContext
from app.demo import borough as b
from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.storage.audit_tables import audit_event
from app.vocabulary import COMMUNICATION_CATEGORY, CommunicationCategory
from app.web.desk import MASH_PAGE
from tests.conftest import StepClock
from tests.web.pages_data import attend, ed, seed
from tests.web.test_dev_sign_in import _app_client, _csrf
from tests.web.test_live_list import cards, hana, position, statements

__all__ = ["hana"]  # the signed-in health visitor (a fixture)


@asynccontextmanager
async def signed_in(ctx: AppContext, person: str) -> AsyncIterator[httpx.AsyncClient]:
    """The pages as one of the development sign-in's people (`lead`, `mash`)."""
    async with _app_client(ctx, web_dev_sign_in=True) as http:
        page = await http.get("/app/sign-in")
        signed = await http.post("/app/dev-sign-in", data={"csrf_token": _csrf(page.text), "person": person})
        assert signed.status_code == 303
        yield http


async def test_her_overdue_list_holds_only_the_notices_past_their_due_time(
    hana: httpx.AsyncClient, client: httpx.AsyncClient, clean_ctx: AppContext, auth: Any
) -> None:
    for start in ("2026-01-05T08:30:00Z", "2026-01-05T09:30:00Z", "2026-01-05T10:30:00Z"):
        await attend(client, ed(auth), start)
    home = await hana.get("/app")
    first, second, third = cards(home.text)
    assert "Overdue</strong>" not in home.text
    task = (await client.get(f"/fhir/Task/{second}")).json()
    task["restriction"]["period"]["end"] = "2025-12-01T12:00:00Z"  # long past at the clock's 2026 instants
    assert (await client.put(f"/fhir/Task/{second}", json=task)).status_code == 200

    overdue = await hana.get("/app/notices/overdue")
    assert overdue.status_code == 200 and cards(overdue.text) == [second]
    assert "1 December 2025, 12:00 GMT" in overdue.text
    home = await hana.get("/app")
    assert cards(home.text) == [first, second, third]
    tagged = re.findall(r'data-task="([^"]+)"(?:(?!data-task=).)*?Overdue</strong>', home.text, re.DOTALL)
    assert tagged == [second]


async def test_the_leads_desk_reads_no_owners_for_its_unrouted_notices(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    """Unrouted notices have no owner to read: the desk's statements are the same with unrouted notices on
    it as without (the list's includes run only for the notices found; none of them reads owners), and the
    notices' senders are not read: their attendances name their providers, which the lead reads."""
    await seed(client, clock.now().date())
    await attend(client, ed(auth), "2026-01-05T08:30:00Z")
    assert (await client.delete(f"/fhir/{b.DUTY}")).status_code == 204  # no duty team: routed nowhere
    async with signed_in(clean_ctx, "lead") as lead:
        counts = []
        for start in (None, "2026-01-05T09:30:00Z", "2026-01-05T10:30:00Z"):
            if start:
                r = await client.post("/fhir/Encounter", headers=ed(auth), json={
                    **b.attendance(start),
                    "subject": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": "9990000182"}}})
                assert r.status_code == 201, r.text
            desk, seen = await statements(clean_ctx, lambda: lead.get("/app/lead"))
            unrouted = desk.text.partition('id="unrouted"')[2].partition('id="quality"')[0]
            assert desk.status_code == 200 and len(cards(unrouted)) == len(counts)
            counts.append(len(seen))
    # with unrouted notices: their search's includes (the notices, as Communications, the child, the
    # attendances, the attendances' providers), and no read of owners, nor of the senders: every
    # attendance names its provider. PostgreSQL: the includes keep generic plans (a SET LOCAL
    # plan_cache_mode, app/storage/db.py; the desk searches nothing after them)
    sets = 1 if clean_ctx.engine.dialect.name == "postgresql" else 0
    assert counts[2] == counts[1] == counts[0] + 4 + sets, counts


async def test_the_leads_desk_names_the_place_from_the_notices_sender_when_the_attendance_names_none(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    """A notice's place is its attendance's provider; for an attendance that names none (here, no longer),
    it is the notice's sender, read after the list by one audited search of its id: on the desk and in
    its live updates (the whole list, and the notices changed since the page's position)."""
    await seed(client, clock.now().date())
    encounter_id = await attend(client, ed(auth), "2026-01-05T08:30:00Z")
    place = "5 January 2026, 08:30 GMT, Demo General Hospital Emergency Department (Contusion)"
    async with signed_in(clean_ctx, "lead") as lead:
        named, seen_named = await statements(clean_ctx, lambda: lead.get("/app/lead"))
        encounter = (await client.get(f"/fhir/Encounter/{encounter_id}")).json()
        del encounter["serviceProvider"]
        assert (await client.put(f"/fhir/Encounter/{encounter_id}", json=encounter)).status_code == 200
        before = await audit_queries(clean_ctx)
        unnamed, seen_unnamed = await statements(clean_ctx, lambda: lead.get("/app/lead"))
        added = (await audit_queries(clean_ctx))[len(before):]
        whole = await lead.get("/app/lead/list")
        [task_id] = cards(whole.text)
        task = (await client.get(f"/fhir/Task/{task_id}")).json()
        task["owner"] = {"reference": "PractitionerRole/demo-hv2"}  # passed on: a change the update shows
        assert (await client.put(f"/fhir/Task/{task_id}", json=task)).status_code == 200
        delta = await lead.get("/app/lead/list", params={"since": position(unnamed.text)})
    assert "data-delta" in delta.text and cards(delta.text) == [task_id] and ">Harriet Second</dd>" in delta.text
    assert place in whole.text and place in delta.text
    assert len(cards(named.text)) == len(cards(unnamed.text)) == 1
    assert place in named.text and place in unnamed.text
    assert [q for q in added if q.startswith("Organization?")] == [
        f"Organization?_id={b.ED.partition('/')[2]}&_count=500&_total=none"]
    # the sender's search (its page alone); the audit records go out with the page's others at COMMIT
    assert len(seen_unnamed) == len(seen_named) + 1, (seen_named, seen_unnamed)


async def test_the_leads_desk_names_a_referral_copy_from_what_its_list_read(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    """A referral copy's author and child are named from the records the team's list read (its health
    visitor, the child of a notice), not searched again; without such a notice they are searched by id."""
    await seed(client, clock.now().date())
    copy = json.loads(json.dumps(b.referral_copy("2026-01-05T10:00:00Z", "Referral text")).replace(b.ED_NURSE, b.HV))
    r = await client.post("/fhir", json=copy, headers=auth("health-visitor", org=b.ZERO19, practitioner=b.HV))
    assert r.status_code == 200, r.text
    legend = "Referral to Demo Borough MASH by Hana Visitor, "
    views = []
    async with signed_in(clean_ctx, "lead") as lead:
        for notices in (0, 1):
            if notices:
                await attend(client, ed(auth), "2026-01-05T08:30:00Z")
            before = await audit_queries(clean_ctx)
            desk = await lead.get("/app/lead")
            assert desk.status_code == 200 and len(cards(desk.text)) == notices and legend in desk.text
            views.append(sorted(q.partition("?")[0] for q in (await audit_queries(clean_ctx))[len(before):]))
    assert views == [
        ["DocumentReference/$qa-queue", "Patient", "PractitionerRole", "Task", "Task"],
        ["DocumentReference/$qa-queue", "Task", "Task"]]


async def test_the_leads_desk_queue_takes_the_teams_people_from_the_unit_of_work(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    """A referral copy is the team's when one of its people wrote it (here the ED stored it, naming the
    team's health visitor as its author): the desk's queue knows the team's people from what the unit of
    work read for the policy, and looks them up no second time; the page's audit records go out together
    at COMMIT (PostgreSQL: one INSERT), none before the queue's search."""
    await seed(client, clock.now().date())
    copy = json.loads(json.dumps(b.referral_copy("2026-01-05T10:00:00Z", "Referral text")).replace(b.ED_NURSE, b.HV))
    r = await client.post("/fhir", json=copy, headers=ed(auth))
    assert r.status_code == 200, r.text
    await attend(client, ed(auth), "2026-01-05T08:30:00Z")
    seen: list[tuple[str, str]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, repr(parameters)))

    async with signed_in(clean_ctx, "lead") as lead:
        event.listen(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
        try:
            desk = await lead.get("/app/lead")
        finally:
            event.remove(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    assert desk.status_code == 200 and "Referral to Demo Borough MASH by Hana Visitor, " in desk.text
    assert len(cards(desk.text)) == 1
    # the look-ups of the organisation's PractitionerRoles (by their `organization`): the unit of work's alone
    looked = [sql for sql, parameters in seen if "'organization'" in parameters]
    assert len(looked) == 1 and "AS which" in looked[0], looked
    if clean_ctx.engine.dialect.name == "postgresql":  # SQLite writes queued rows past the cursor
        assert [sql for sql, _ in seen if "INSERT INTO audit_event" in sql] == [seen[-1][0]]


async def test_the_desks_review_forms_carry_each_copy_and_the_viewing_sessions_token(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    """Each referral copy's review form posts to its own copy and carries the token of the session that
    views the page (a form is rendered once for each copy and session, and kept): two leads' sessions,
    each viewing the desk twice."""
    await seed(client, clock.now().date())
    for sent in ("2026-01-05T10:00:00Z", "2026-01-05T11:00:00Z"):
        copy = json.loads(json.dumps(b.referral_copy(sent, "Referral text")).replace(b.ED_NURSE, b.HV))
        r = await client.post("/fhir", json=copy, headers=ed(auth))
        assert r.status_code == 200, r.text
    tokens = []
    async with signed_in(clean_ctx, "lead") as first, signed_in(clean_ctx, "lead") as second:
        for lead in (first, second, first, second):
            page = (await lead.get("/app/lead")).text
            forms = re.findall(r'<form method="post" action="/app/lead/review/([^"]+)"[^>]*>\s*'
                               r'<input type="hidden" name="csrf_token" value="([^"]+)">', page)
            on_page = set(re.findall(r'name="csrf_token" value="([^"]+)"', page))  # the header's sign-out too
            assert len(forms) == len({copy_id for copy_id, _ in forms}) == 2, forms
            assert len(on_page) == 1 and {token for _, token in forms} == on_page
            tokens.append(on_page.pop())
    assert tokens[0] == tokens[2] != tokens[1] == tokens[3]


async def audit_queries(ctx: AppContext) -> list[str]:
    """The queries of the audit trail's search records, oldest first."""
    async with ctx.sessionmaker() as s:
        rows = (await s.execute(select(audit_event.c.content).order_by(audit_event.c.seq))).all()
    return [e["description"] for (content,) in rows for e in content.get("entity") or [] if e.get("query")]


async def test_the_mash_page_reads_no_recipients_for_its_referral_copies(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    """A referral copy's recipient is the authority itself, which its card does not name: the MASH page
    reads each copy's child and sender (and the organisation holding the copy), not its recipient. Its
    statements with one or two referral copies are the same, and those without any plus the referral
    search's includes and withheld check, the copies' search (its page, its custodians, its withheld
    check), the copies' Binaries for what is shared with the MASH and the outcomes sent in reply."""
    await seed(client, clock.now().date())
    async with signed_in(clean_ctx, "mash") as mash:
        counts = []
        for sent in (None, "2026-01-05T10:00:00Z", "2026-01-05T11:00:00Z"):
            if sent:
                r = await client.post("/fhir", json=b.referral_copy(sent, "Referral text"), headers=ed(auth))
                assert r.status_code == 200, r.text
            view, seen = await statements(clean_ctx, lambda: mash.get("/app/mash"))
            assert view.status_code == 200 and view.text.count("/app/mash/reply/") == len(counts)
            counts.append(len(seen))
    # with referral copies: the DocumentReferences whose Binaries are shared with the MASH (1), the referral
    # search's includes, the child (1: a Patient) and the sender (1: a look at the types its references
    # name, as they may be any; it names a Practitioner, which the MASH may not read, so nothing is read)
    # and no recipient, its withheld check (1), the copies' search, its custodians and withheld check (3),
    # the outcomes sent in reply (1: a page without referral copies does not look for them); the audit
    # records go out with the page's others at COMMIT (no search reads them). PostgreSQL: both searches'
    # includes keep generic plans, what follows each does not (four SET LOCAL plan_cache_mode)
    sets = 4 if clean_ctx.engine.dialect.name == "postgresql" else 0
    assert counts[2] == counts[1] == counts[0] + 8 + sets, counts


async def test_the_mash_page_pages_its_lists_and_does_not_count_a_full_one(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    """The page shows the newest access notifications, a page of them, and never how many there are in
    all: a full page makes no more statements than one a notification short of full (the search would
    otherwise count them all at every view). Older ones are on the next page, reached by an "Older" link
    that keeps the other list where it is; a page number that is not one is refused (400)."""
    await seed(client, clock.now().date())
    flag = {**b.plan_flag(clock.now().date()), "author": {"reference": b.MASH}}  # the MASH's own plan flag
    assert (await client.post("/fhir/Flag", json=flag)).status_code == 201
    assert (await client.get("/fhir/Flag", params={"patient": b.CHILD}, headers=ed(auth))).status_code == 200
    category = f"{COMMUNICATION_CATEGORY}|{CommunicationCategory.ACCESS_NOTIFICATION}"
    [first] = [e["resource"] for e in (await client.get("/fhir/Communication", params={"category": category})
                                       ).json()["entry"]]

    async def another(n: int) -> None:  # the same notification again, as another read would raise it
        copy = {k: v for k, v in first.items() if k not in ("id", "meta")}
        copy["identifier"] = [{**ident, "value": f"{ident['value']}|{n}"} for ident in first["identifier"]]
        assert (await client.post("/fhir/Communication", json=copy)).status_code == 201

    for n in range(1, MASH_PAGE - 1):
        await another(n)
    async with signed_in(clean_ctx, "mash") as mash:
        counts = []
        for n in (None, MASH_PAGE - 1):
            if n:
                await another(n)
            view, seen = await statements(clean_ctx, lambda: mash.get("/app/mash"))
            assert view.status_code == 200 and view.text.count("Safeguarding flags owned by") == MASH_PAGE - 1 + len(counts)
            counts.append(len(seen))
        assert counts[1] == counts[0], counts
        await another(MASH_PAGE)  # one more than a page: the oldest moves to page 2
        newest = await mash.get("/app/mash")
        assert newest.text.count("Safeguarding flags owned by") == MASH_PAGE
        assert re.findall(r'href="(/app/mash\?[^"]+)"', newest.text) == ["/app/mash?referrals=1&amp;accesses=2"]
        older = await mash.get("/app/mash?referrals=1&accesses=2")
        assert older.status_code == 200 and older.text.count("Safeguarding flags owned by") == 1
        assert "Who looked at a child's plan: page 2" in older.text
        assert re.findall(r'href="(/app/mash\?[^"]+)"', older.text) == ["/app/mash?referrals=1&amp;accesses=1"]
        empty = await mash.get("/app/mash?accesses=3")
        assert empty.status_code == 200 and "No older access notifications." in empty.text
        for bad in ("0", "abc", "-1", "100000", "1.5"):
            refused = await mash.get("/app/mash", params={"accesses": bad})
            assert refused.status_code == 400, bad
            assert f"&#39;accesses&#39; must be a page number from 1 to 99999, not &#39;{bad}&#39;" in refused.text


async def test_the_leads_desk_shows_a_notices_card_as_it_is_now(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    """A card is kept for each distinct row and look (app/web/templates.py `card`): the desk shows the same
    card at each view, and once the notice is passed on, with whom it is now."""
    await seed(client, clock.now().date())
    await attend(client, ed(auth), "2026-01-05T08:30:00Z")
    with_hv = '<dt class="nhsuk-summary-list__key">With</dt><dd class="nhsuk-summary-list__value">Hana Visitor</dd>'
    async with signed_in(clean_ctx, "lead") as lead:
        first, again = (await lead.get("/app/lead")).text, (await lead.get("/app/lead")).text
        [task_id] = cards(first)
        assert with_hv in first
        assert _card(first, task_id) == _card(again, task_id)
        task = (await client.get(f"/fhir/Task/{task_id}")).json()
        task["owner"] = {"reference": "PractitionerRole/demo-hv2"}
        assert (await client.put(f"/fhir/Task/{task_id}", json=task)).status_code == 200
        moved = (await lead.get("/app/lead")).text
    assert cards(moved) == [task_id] and with_hv not in moved and ">Harriet Second</dd>" in moved
    assert _card(moved, task_id).replace(">Harriet Second<", ">Hana Visitor<") == _card(first, task_id)


def _card(html: str, task_id: str) -> str:
    """The card of the notice `task_id` on a page."""
    return html.partition(f'data-task="{task_id}"')[2].partition("</li>")[0]


async def test_the_notice_page_counts_the_childs_open_acknowledgements_and_reads_neither_them_nor_her_accesses(
    hana: httpx.AsyncClient, client: httpx.AsyncClient, clean_ctx: AppContext, auth: Any
) -> None:
    """A notice's page says how many open acknowledgements the child has, not which: it counts them in one
    statement however many there are, and reads none of them. It shows no accesses to the child's record,
    so it reads none either, not even for a safeguarding lead, who may read them."""
    await attend(client, ed(auth), "2026-01-05T08:30:00Z")
    [task] = cards((await hana.get("/app")).text)
    views = []
    for more in ((), ("2026-01-05T09:30:00Z", "2026-01-05T10:30:00Z")):
        for start in more:
            await attend(client, ed(auth), start)
        page, seen = await statements(clean_ctx, lambda: hana.get(f"/app/notices/{task}"))
        assert page.status_code == 200, page.text
        views.append((re.findall(r"Open acknowledgements for this child: (\d+)", page.text),
                      len(seen), sum("count(" in s for s in seen), [s for s in seen if "audit_event.content" in s]))
    assert views == [(["1"], views[0][1], 1, []), (["3"], views[0][1], 1, [])]
    async with signed_in(clean_ctx, "lead") as lead:
        page, seen = await statements(clean_ctx, lambda: lead.get(f"/app/notices/{task}"))
    assert page.status_code == 200 and "Open acknowledgements for this child: 3" in page.text
    assert [s for s in seen if "audit_event.content" in s] == []  # the audit chain's own look-up reads no record


async def test_each_pages_header_names_its_own_user_and_carries_her_own_sessions_token(
    hana: httpx.AsyncClient, clean_ctx: AppContext
) -> None:
    """A page's top (the NHS.UK header with the user's name and the sign-out form) is rendered once for a
    user's name and session and then kept: every page still names its own user, its sign-out form carries
    that session's CSRF token (the one its other forms carry), and a new session gets its own."""
    def header(page: httpx.Response) -> tuple[list[str], set[str]]:
        assert page.status_code == 200, page.text
        top = page.text.partition("</header>")[0]
        return (re.findall(r"Hana Visitor|Sam Lead", top),
                set(re.findall(r'name="csrf_token" value="([^"]+)"', page.text)))

    async with signed_in(clean_ctx, "lead") as lead:
        seen = [header(await hana.get("/app")), header(await lead.get("/app/lead")),
                header(await hana.get("/app/notices/overdue")), header(await lead.get("/app/lead"))]
        async with signed_in(clean_ctx, "lead") as again:
            renewed = header(await again.get("/app/lead"))
    (hv, hv_token), (sam, sam_token), (hv2, hv_token2), (sam2, sam_token2) = seen
    assert (hv, sam, hv2, sam2, renewed[0]) == (["Hana Visitor"], ["Sam Lead"], ["Hana Visitor"], ["Sam Lead"],
                                                ["Sam Lead"])
    assert len(hv_token) == len(sam_token) == len(renewed[1]) == 1
    assert hv_token == hv_token2 and sam_token == sam_token2 and len(hv_token | sam_token | renewed[1]) == 3
