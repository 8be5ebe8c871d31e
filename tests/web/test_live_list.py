"""A list's live update in process, on both databases, signed in with the development sign-in: what
changed since the page's position is fetched as such (one audited search of those Tasks), a notice that
left the list is named for removal, a position the server cannot open gets the whole list, a page far
behind catches up in bounded pages of changes (never the whole list); and the database statements of a
page view do not grow with the notices on it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from app.context import AppContext
from app.vocabulary import TASK_CODE
from app.web.live import newest_in
from app.web.pages import delta_limit
from tests.conftest import StepClock
from tests.web.pages_data import OTHER_HV, attend, ed, other_changes, seed
from tests.web.test_dev_sign_in import _app_client, _csrf

Auth = Any


@pytest.fixture
async def hana(client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock) -> AsyncIterator[httpx.AsyncClient]:
    """The demo health visitor, signed in to the pages (the borough seeded through the API)."""
    await seed(client, clock.now().date())
    async with _app_client(clean_ctx, web_dev_sign_in=True) as http:
        page = await http.get("/app/sign-in")
        signed = await http.post("/app/dev-sign-in", data={"csrf_token": _csrf(page.text), "person": "hv"})
        assert signed.status_code == 303
        yield http


def position(page: str) -> str:
    found = re.search(r'data-event="([^"]*)"', page)
    assert found, page
    return found.group(1)


def cards(html: str) -> list[str]:
    return re.findall(r'data-task="([^"]+)"', html)


async def statements(ctx: AppContext, call: Any) -> tuple[Any, list[str]]:
    """What `call` sends, but the reads of records' JSON that depend on what this process read before
    (PostgreSQL, app/storage/contents.py; tests/api/test_kept_contents.py)."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # SQLite's BEGIN IMMEDIATE is a statement, PostgreSQL's is not
        if not statement.startswith("BEGIN") and "pg_column_size(" not in statement:
            seen.append(statement)
    event.listen(ctx.engine.sync_engine, "before_cursor_execute", count)
    try:
        return await call(), seen
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", count)


async def test_a_live_update_fetches_what_changed_since_the_pages_position(
    hana: httpx.AsyncClient, client: httpx.AsyncClient, clean_ctx: AppContext, auth: Auth
) -> None:
    first = await attend(client, ed(auth), "2026-01-05T08:30:00Z")
    page = await hana.get("/app")
    [shown] = cards(page.text)
    since = position(page.text)
    nothing = await hana.get("/app/notices/list", params={"since": since})
    assert (nothing.status_code, cards(nothing.text), 'data-gone=""' in nothing.text) == (200, [], True)

    await attend(client, ed(auth), "2026-01-05T09:30:00Z")
    update = await hana.get("/app/notices/list", params={"since": since})
    assert update.status_code == 200 and "data-delta" in update.text
    [new] = cards(update.text)
    assert new != shown and 'data-gone=""' in update.text and "Casey Demo" in update.text
    after = update.headers["safeflag-event"]
    async with clean_ctx.sessionmaker() as session:
        assert hana_app(hana).state.web_live.positions.open(after) == await newest_in(session)
    assert first  # the first attendance's Encounter

    # she acknowledges the new one: the next update names it for removal and shows nothing
    notice = await hana.get(f"/app/notices/{new}")
    version = re.search(r'name="version" value="(\d+)"', notice.text)
    assert version, notice.text
    done = await hana.post(f"/app/notices/{new}/acknowledge", data={
        "csrf_token": _csrf(notice.text), "version": version.group(1), "note": ""})
    assert done.status_code == 303
    left = await hana.get("/app/notices/list", params={"since": after})
    assert (cards(left.text), re.search(r'data-gone="([^"]*)"', left.text).group(1)) == ([], new)  # type: ignore[union-attr]

    # a position the server cannot open (another key, altered): the whole list, as the page first had it
    whole = await hana.get("/app/notices/list", params={"since": "A" * 48})
    assert "data-delta" not in whole.text and cards(whole.text) == [shown]


def hana_app(http: httpx.AsyncClient) -> Any:
    return http._transport.app  # type: ignore[attr-defined]


async def test_a_page_view_makes_the_same_statements_however_many_notices_it_shows(
    hana: httpx.AsyncClient, client: httpx.AsyncClient, clean_ctx: AppContext, auth: Auth
) -> None:
    counts = {}
    for total in (1, 4):
        while len(cards((await hana.get("/app")).text)) < total:
            await attend(client, ed(auth), "2026-01-05T08:30:00Z")
        page, seen = await statements(clean_ctx, lambda: hana.get("/app"))
        assert len(cards(page.text)) == total
        counts[total] = len(seen)
    since = position((await hana.get("/app")).text)
    await attend(client, ed(auth), "2026-01-05T10:30:00Z")
    update, seen = await statements(clean_ctx, lambda: hana.get("/app/notices/list", params={"since": since}))
    assert len(cards(update.text)) == 1
    # the session (touched and read in one), her team and her own roles (1), the position, the Tasks changed
    # since (delta only), the search and its includes (5, the notices as Communications, and a look at the
    # types of the senders, which may be any), the withheld check, the audit record (1). SQLite: its
    # lane's last row (the queued audit rows go straight to sqlite3); PostgreSQL: the queued audit rows in one
    # statement (app/storage/buffer.py), the connection continuing its lane from the row it committed last,
    # and the search's `SET LOCAL plan_cache_mode` (app/storage/db.py: a search is planned with its values),
    # one before its includes (their look-ups by pk and by type and id keep generic plans) and one before
    # the withheld check (a search again)
    page_statements = 11 if clean_ctx.engine.dialect.name == "sqlite" else 14
    assert (counts, len(seen)) == ({1: page_statements, 4: page_statements}, page_statements + 1)


async def test_a_page_far_behind_catches_up_in_bounded_pages_of_its_own_changes(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await seed(client, clock.now().date())
    # one live update covers 9 changes here (SAFEFLAG_SEARCH_MAX_VALUES 10 less the notice code's value)
    async with _app_client(clean_ctx, web_dev_sign_in=True, search_max_values=10) as hana:
        page = await hana.get("/app/sign-in")
        assert (await hana.post("/app/dev-sign-in", data={"csrf_token": _csrf(page.text), "person": "hv"})
                ).status_code == 303
        await attend(client, ed(auth), "2026-01-05T07:30:00Z")
        page = await hana.get("/app")
        [shown] = cards(page.text)
        since = position(page.text)
        assert delta_limit(hana_app(hana).state.ctx.settings) == 9
        for hour in range(8, 20):  # twelve new notices of hers, other organisations' changes among them
            await attend(client, ed(auth), f"2026-01-05T{hour:02d}:30:00Z")
            await other_changes(clean_ctx.engine, 20)
        keys = hana_app(hana).state.web_live.positions
        answers, shown_after = [], []
        for _ in range(5):  # bounded: the page asks again while an answer says more follow
            update = await hana.get("/app/notices/list", params={"since": since})
            assert update.status_code == 200 and "data-delta" in update.text  # never the whole list
            answers.append((len(cards(update.text)), update.headers.get("safeflag-more")))
            shown_after += cards(update.text)
            since = update.headers["safeflag-event"]
            if not update.headers.get("safeflag-more"):
                break
        # the first page covers her first 9 changes, the second the rest; the others' count for nothing
        assert answers == [(9, "1"), (3, None)]
        assert len(set(shown_after)) == 12 and shown not in shown_after
        async with clean_ctx.sessionmaker() as session:
            assert keys.open(since) == await newest_in(session)


async def other_organisation_tasks(client: httpx.AsyncClient, count: int) -> None:
    """`count` real acknowledgement Tasks of another 0-19 service's health visitor, written through the
    API (about the demo child's first notice: another service asked to act on it)."""
    comm = (await client.get("/fhir/Communication", params={"_count": "1"})).json()["entry"][0]["resource"]
    for _ in range(count):
        r = await client.post("/fhir/Task", json={
            "resourceType": "Task", "status": "requested", "intent": "order",
            "code": {"coding": [{"system": TASK_CODE, "code": "acknowledge"}]},
            "focus": {"reference": f"Communication/{comm['id']}"}, "for": comm["subject"],
            "owner": {"reference": OTHER_HV}})
        assert r.status_code == 201, r.text


async def test_a_live_update_says_nothing_of_changes_its_reader_may_not_read(
    hana: httpx.AsyncClient, client: httpx.AsyncClient, clean_ctx: AppContext, auth: Auth
) -> None:
    await attend(client, ed(auth), "2026-01-05T07:30:00Z")
    since = position((await hana.get("/app")).text)

    async def update_after(others: int) -> list[tuple[str, list[str]]]:
        """Her next notice, after `others` changes of another organisation's Tasks: what her page
        receives until it has caught up (each answer with its ids and times made uniform, and the names
        of its SafeFlag headers)."""
        nonlocal since
        await other_organisation_tasks(client, others)
        await attend(client, ed(auth), "2026-01-05T09:30:00Z")
        answers = []
        for _ in range(3):
            update = await hana.get("/app/notices/list", params={"since": since})
            body = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d", "0", update.text)
            answers.append((f"{update.status_code} {body}", sorted(h for h in update.headers if h.startswith("safeflag-"))))
            since = update.headers["safeflag-event"]
            if not update.headers.get("safeflag-more"):
                break
        return answers

    quiet, busy = await update_after(0), await update_after(150)
    assert len(quiet) == 1 and quiet[0][1] == ["safeflag-event"] and len(cards(quiet[0][0])) == 1
    assert busy == quiet
