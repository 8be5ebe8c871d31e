"""The dispatcher: claim -> match -> deliver, plus timers (heartbeats, escalations).

Runs in-process under `safeflag serve` or as any number of `safeflag dispatcher` processes against one
PostgreSQL. It wakes on PostgreSQL `LISTEN safeflag_outbox` (a trigger on the outbox table NOTIFYs in the writing
transaction, so the wake-up arrives at commit), on the in-process signal set after each commit, or
after a short poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import httpx
from sqlalchemy import and_, exists, or_, select

from app.context import AppContext
from app.notify.channels.websocket import WebSocketRegistry
from app.notify.delivery import RetryPolicy, deliver, lease
from app.notify.matcher import SpecCache, match_rows
from app.notify.outbox import CHANNEL, claim_batch, mark_processed
from app.storage.notify_tables import notification, subscription_state
from app.storage.repository import utc_ms

log = logging.getLogger("safeflag.dispatcher")

Timer = Callable[[AppContext, datetime], Awaitable[int]]


class Dispatcher:
    def __init__(
        self,
        ctx: AppContext,
        *,
        ws: WebSocketRegistry | None = None,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        timers: list[Timer] | None = None,
        batch_size: int = 200,
        lease_seconds: float | None = None,
        poll_seconds: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.ws = ws
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
        s = ctx.settings
        self.retry = retry or RetryPolicy(s.notify_backoff_base, s.notify_backoff_cap,
                                          timedelta(seconds=s.notify_retry_window))
        self.timers = list(timers or [])
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds if lease_seconds is not None else s.notify_lease_seconds
        self.poll_seconds = poll_seconds if poll_seconds is not None else s.notify_poll_seconds
        self.cache: SpecCache = {}
        self.wake = ctx.wake
        self._last_timers = datetime.min

    def _now(self) -> datetime:
        return utc_ms(self.ctx.clock.now())

    async def match_once(self) -> int:
        """Consume one batch of outbox rows; returns how many rows were consumed."""
        async with self.ctx.sessionmaker() as session, session.begin():
            rows = await claim_batch(session, self.batch_size)
            if not rows:
                return 0
            now = self._now()
            await match_rows(session, rows, base=self.ctx.settings.fhir_base, now=now, cache=self.cache)
            await mark_processed(session, [r.id for r in rows], now)
        if len(self.cache) > 10_000:
            self.cache.clear()
        return len(rows)

    async def _due_subscriptions(self, now: datetime) -> list[str]:
        s, n = subscription_state.c, notification.c
        pending = exists().where(n.sub_id == s.sub_id, n.delivered_at.is_(None))
        heartbeat_due = and_(s.heartbeat_seconds.is_not(None), s.status == "active")
        stmt = (
            select(s.sub_id, s.channel_type)
            .where(
                s.status.in_(("requested", "active")),
                or_(s.handshake_due == 1, pending, heartbeat_due),
                or_(s.lease_until.is_(None), s.lease_until < now),
                or_(s.next_attempt_at.is_(None), s.next_attempt_at <= now),
            )
            .limit(100)
        )
        async with self.ctx.sessionmaker() as session, session.begin():
            rows = (await session.execute(stmt)).all()
            bound = self.ws.bound_subscriptions() if self.ws else set()
            leased = []
            for sub_id, channel in rows:
                if channel == "websocket" and sub_id not in bound:
                    continue
                if await lease(session, sub_id, self.owner, now, self.lease_seconds):
                    leased.append(sub_id)
        return leased

    async def deliver_once(self) -> int:
        now = self._now()
        subs = await self._due_subscriptions(now)
        if not subs:
            return 0
        results = await asyncio.gather(
            *(deliver(self.ctx, sub, self.owner, http=self.http, ws=self.ws, retry=self.retry,
                      lease_seconds=self.lease_seconds) for sub in subs),
            return_exceptions=True,
        )
        delivered = 0
        for sub, res in zip(subs, results):
            if isinstance(res, BaseException):
                log.error("delivery crashed", extra={"subscription": sub, "error": repr(res)})
            else:
                delivered += res
        return delivered

    async def run_timers(self, force: bool = False) -> int:
        now = self._now()
        if not force and now - self._last_timers < timedelta(seconds=self.ctx.settings.notify_timer_seconds):
            return 0
        self._last_timers = now
        done = 0
        for timer in self.timers:
            try:
                done += await timer(self.ctx, now)
            except Exception:  # noqa: BLE001 - one failing timer must not stop delivery
                log.exception("timer failed")
        return done

    async def run_once(self) -> int:
        """One full round; returns the amount of work done (0 when idle)."""
        work = 0
        while True:
            consumed = await self.match_once()
            work += consumed
            if consumed < self.batch_size:
                break
        work += await self.deliver_once()
        work += await self.run_timers()
        return work

    async def run(self, stop: asyncio.Event) -> None:
        listener = await self._listen()
        try:
            while not stop.is_set():
                try:
                    work = await self.run_once()
                except Exception:  # noqa: BLE001 - keep the loop alive; the outbox keeps the work
                    log.exception("dispatcher round failed")
                    work = 0
                if work:
                    continue
                self.wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wait(stop), timeout=self.poll_seconds)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
            if self._own_http:
                await self.http.aclose()

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _listen(self) -> object | None:
        """LISTEN on PostgreSQL so that commits in other processes wake this one."""
        url = self.ctx.engine.url
        if url.get_backend_name() != "postgresql":
            return None
        import asyncpg

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            conn = await asyncpg.connect(dsn)
            await conn.add_listener(CHANNEL, lambda *_: self.wake.set())
        except Exception:  # noqa: BLE001 - polling still works without LISTEN
            log.warning("LISTEN unavailable; polling only")
            return None
        return conn
