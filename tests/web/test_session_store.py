"""The server-side session store on SQLite and PostgreSQL, at fixed instants of its own clock: the idle
timeout's boundary (configurable), a new session replacing the old one, expired sessions cleared out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.context import AppContext
from app.storage.web_tables import web_session
from app.web.session import SessionStore, WebSession

T0 = datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC)


class SetClock:
    def __init__(self) -> None:
        self.current = T0

    def now(self) -> datetime:
        return self.current


@dataclass
class StoreContext:
    settings: Settings
    clock: SetClock
    sessionmaker: async_sessionmaker[AsyncSession]


def _store(ctx: AppContext, clock: SetClock, **settings: object) -> SessionStore:
    return SessionStore(StoreContext(ctx.settings.model_copy(update=settings), clock, ctx.sessionmaker))


async def _keys(ctx: AppContext) -> set[str]:
    async with ctx.sessionmaker() as db:
        return set((await db.execute(select(web_session.c.id_hash))).scalars())


async def test_a_session_ends_after_15_idle_minutes_by_default(clean_ctx: AppContext) -> None:
    clock = SetClock()
    store = _store(clean_ctx, clock)
    cookie, created = await store.create(claims={"sub": "hv"})
    assert created.key == hashlib.sha256(cookie.encode()).hexdigest()  # the table never holds the cookie
    assert await _keys(clean_ctx) == {created.key}
    clock.current = T0 + timedelta(minutes=15)  # exactly 15 minutes idle: still on
    found = await store.load(cookie)
    assert found is not None and not found.ended and found.claims == {"sub": "hv"} and found.csrf == created.csrf
    clock.current += timedelta(minutes=15)  # its last use moved on: 15 more minutes are still within
    assert (await store.load(cookie)).ended is False  # type: ignore[union-attr]
    clock.current += timedelta(minutes=15, seconds=1)  # 15 minutes and a second: ended, and deleted
    ended = await store.load(cookie)
    assert ended is not None and ended.ended
    assert await _keys(clean_ctx) == set()
    assert await store.load(cookie) is None


async def test_the_idle_timeout_is_configurable(clean_ctx: AppContext) -> None:
    clock = SetClock()
    store = _store(clean_ctx, clock, web_idle_timeout_seconds=60)
    cookie, _created = await store.create(claims={"sub": "hv"})
    clock.current = T0 + timedelta(seconds=60)
    assert (await store.load(cookie)).ended is False  # type: ignore[union-attr]
    clock.current += timedelta(seconds=61)
    assert (await store.load(cookie)).ended is True  # type: ignore[union-attr]


async def test_signing_in_replaces_the_session_and_clears_expired_ones(clean_ctx: AppContext) -> None:
    clock = SetClock()
    store = _store(clean_ctx, clock)
    stale_cookie, stale = await store.create(login={"state": "s1"})
    clock.current = T0 + timedelta(minutes=10)
    pending_cookie, pending = await store.create(login={"state": "s2"})
    clock.current = T0 + timedelta(minutes=16)  # the first is now past its timeout, the second is not
    signed_cookie, signed = await store.create(claims={"sub": "hv"}, replaces=pending.key)
    assert await _keys(clean_ctx) == {signed.key}
    assert signed_cookie not in (stale_cookie, pending_cookie) and signed.csrf not in (stale.csrf, pending.csrf)
    assert await store.load(pending_cookie) is None  # the pre-sign-in value no longer works (no fixation)
    await store.end(signed.key)
    assert await store.load(signed_cookie) is None


async def test_a_cookie_that_names_no_session_finds_none(clean_ctx: AppContext) -> None:
    store = _store(clean_ctx, SetClock())
    assert await store.load(None) is None
    assert await store.load("") is None
    assert await store.load("x" * 129) is None
    assert await store.load("not-a-session") is None


async def test_a_session_nobody_comes_back_to_is_cleared_out_a_day_after_its_timeout_and_reported_once(
        clean_ctx: AppContext) -> None:
    """A sign-in never finished is cleared out at its timeout; a signed-in session waits a day past it for
    its user (who is then told she timed out), then is cleared out when another session starts, and its
    end reported. Whichever deletes it (the sweep, or its own late use) reports its end, once."""
    clock = SetClock()
    reported: list[tuple[str, object, bool]] = []

    async def on_swept(session: WebSession) -> None:
        reported.append((session.key, session.claims, session.ended))

    store = SessionStore(StoreContext(clean_ctx.settings, clock, clean_ctx.sessionmaker), on_swept)
    back_cookie, back = await store.create(claims={"sub": "hv"})
    _away_cookie, away = await store.create(claims={"sub": "lead"})
    _pending_cookie, pending = await store.create(login={"state": "s"})
    clock.current = T0 + timedelta(minutes=15, seconds=1)
    await store.create()
    assert pending.key not in await _keys(clean_ctx)  # the unfinished sign-in: gone at its timeout, unreported
    assert {back.key, away.key} <= await _keys(clean_ctx) and reported == []
    clock.current = T0 + timedelta(hours=3)  # back after lunch: told she timed out (her own use reports it)
    ended = await store.load(back_cookie)
    assert ended is not None and ended.ended and ended.claims == {"sub": "hv"}
    clock.current = T0 + timedelta(days=1, minutes=15)  # exactly a day past the timeout: still kept
    await store.create()
    assert away.key in await _keys(clean_ctx) and reported == []
    clock.current += timedelta(seconds=1)
    await store.create()
    assert away.key not in await _keys(clean_ctx)
    assert reported == [(away.key, {"sub": "lead"}, True)]
    clock.current += timedelta(days=2)
    await store.create()
    assert len(reported) == 1  # once


async def test_a_page_views_move_of_last_use_is_bookkeeping_and_a_sessions_end_durable(clean_ctx: AppContext) -> None:
    """Every page view moves its session's last use in a transaction committed as bookkeeping (on SQLite
    no fsync of its own: a power loss could only take the move back), with one statement that also reads
    the session (one round trip on PostgreSQL); deleting a session past its timeout, whose end is
    audited, is an ordinary durable transaction."""
    clock = SetClock()
    store = _store(clean_ctx, clock)
    cookie, _created = await store.create(claims={"sub": "hv"})
    transactions: list[tuple[bool, str | None, list[str]]] = []

    def began(conn: Any) -> None:
        options = conn.get_execution_options()
        transactions.append((bool(options.get("safeflag_bookkeeping")), options.get("isolation_level"), []))

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if transactions and not sql.lstrip().upper().startswith("BEGIN"):
            transactions[-1][2].append(sql.split()[0].upper())

    engine = clean_ctx.engine.sync_engine
    event.listen(engine, "begin", began)
    event.listen(engine, "before_cursor_execute", statement)
    try:
        clock.current = T0 + timedelta(minutes=5)
        assert (await store.load(cookie)).ended is False  # type: ignore[union-attr]
        moved = list(transactions)
        transactions.clear()
        clock.current += timedelta(minutes=15, seconds=1)
        assert (await store.load(cookie)).ended is True  # type: ignore[union-attr]
        ended = list(transactions)
    finally:
        event.remove(engine, "begin", began)
        event.remove(engine, "before_cursor_execute", statement)
    # one statement moves a live session's last use and reads it; on PostgreSQL as its own transaction
    # (autocommit: no BEGIN and COMMIT round trips)
    one_trip = "AUTOCOMMIT" if clean_ctx.engine.dialect.name == "postgresql" else None
    assert moved == [(True, one_trip, ["UPDATE"])]
    assert ended == [(True, one_trip, ["UPDATE", "SELECT"]), (False, None, ["DELETE"])]  # found, not live: ended
    async with clean_ctx.sessionmaker() as db:
        assert (await db.execute(select(web_session.c.last_seen))).first() is None
