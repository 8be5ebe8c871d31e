"""The dispatcher: claim -> match -> deliver, plus timers (heartbeats, escalations).

Runs in-process under `safeflag serve` or as any number of `safeflag dispatcher` processes against one
PostgreSQL. It wakes on PostgreSQL `LISTEN safeflag_outbox` (a trigger on the outbox table NOTIFYs in the writing
transaction, so the wake-up arrives at commit), on the in-process signal set after each commit or when
one of its deliveries ends, or after a short poll interval. The signal is cleared before a round looks
for work, never after: a commit that lands while a round runs (after its outbox query found nothing)
leaves the signal set, so the next round starts at once instead of after the poll interval.

Each subscription's delivery runs as a task of its own: the loop goes on matching and starting the
deliveries of other subscriptions while one waits on a slow or unresponsive subscriber. A lease held
by a dispatcher whose process is gone is taken back at once (app/notify/liveness.py). A delivery that
finds its lease gone when it comes to record its outcome (it stalled past the lease and another
dispatcher took the subscription over) changes nothing: it is logged and counted
(`safeflag_notify_lease_lost_total`), and the dispatcher holding the lease now decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, exists, or_, select, update

from app.notify import trace
from app.notify.channels.websocket import WebSocketRegistry
from app.notify.delivery import FREE, Lease, RetryPolicy, deliver, lease
from app.notify.liveness import FileLiveness, Liveness, PgLiveness, sqlite_lock_dir
from app.notify.matcher import SpecCache, match_rows
from app.notify.outbox import CHANNEL, claim_batch, mark_processed
from app.ports import UnitOfWork
from app.storage.failures import as_fhir_error
from app.storage.notify_tables import notification, subscription_state
from app.storage.repository import utc_ms

log = logging.getLogger("safeflag.dispatcher")

Timer = Callable[[UnitOfWork, datetime], Awaitable[int]]
DUE_PER_ROUND = 100  # subscriptions a round looks at


class Dispatcher:
    def __init__(
        self,
        ctx: UnitOfWork,
        *,
        ws: WebSocketRegistry | None = None,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        timers: list[Timer] | None = None,
        batch_size: int = 200,
        lease_seconds: float | None = None,
        poll_seconds: float | None = None,
        metrics: Any = None,
    ) -> None:
        self.ctx = ctx
        self.metrics = metrics  # the app's Metrics (app/observability.py) when it runs in-process
        self.leases_lost = 0
        self.ws = ws
        self.liveness = Liveness()  # until start(): leases name this owner, nobody can prove it gone
        self._http = http
        self._own_http = http is None
        s = ctx.settings
        self.retry = retry or RetryPolicy(s.notify_backoff_base, s.notify_backoff_cap,
                                          timedelta(seconds=s.notify_retry_window))
        self.timers = list(timers or [])
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds if lease_seconds is not None else s.notify_lease_seconds
        self.poll_seconds = poll_seconds if poll_seconds is not None else s.notify_poll_seconds
        self.cache: SpecCache = {}
        self.wake = ctx.wake
        trace.configure(s.notify_trace_dir)
        self._last_timers = datetime.min
        self._inflight: dict[str, asyncio.Task[int]] = {}  # subscription -> its delivery, running
        self.due_left = False  # the last round started as many deliveries as one round looks at
        self._leases: dict[str, Lease] = {}  # subscription -> the lease taken for its next delivery
        self._failing: str | None = None  # message id of the database failure said last, until a round works
        self._alive: dict[str, float] = {}  # other lease owners seen alive -> until when (loop time) to trust it
        self._conn: Any = None  # PostgreSQL: the LISTEN connection, which also holds the liveness lock
        self._reconnect_at = 0.0

    @property
    def http(self) -> httpx.AsyncClient:
        """The rest-hook client, made at its first use: making one loads the TLS trust store, a large share
        of a worker's start (and a server without rest-hook subscriptions never needs it)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
        return self._http

    @property
    def owner(self) -> str:
        """The name this dispatcher's leases carry (app/notify/liveness.py)."""
        return self.liveness.owner

    def _now(self) -> datetime:
        return utc_ms(self.ctx.clock.now())

    async def start(self) -> None:
        """Take this process's liveness lock and, on PostgreSQL, LISTEN for commits of other processes."""
        url = self.ctx.engine.url
        if url.get_backend_name() != "postgresql":
            if type(self.liveness) is Liveness and (directory := sqlite_lock_dir(url.database)) is not None:
                self.liveness = FileLiveness(directory)
            return
        import asyncpg

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._reconnect_at = asyncio.get_running_loop().time() + 5.0
        try:
            conn = await asyncpg.connect(dsn)
            await conn.add_listener(CHANNEL, lambda *_: self.wake.set())
            if not isinstance(self.liveness, PgLiveness):
                self.liveness = PgLiveness(conn)
            self.liveness.conn = conn
            await self.liveness.hold()
        except Exception:  # noqa: BLE001 - polling (and time-limited leases) still work without it
            log.warning("LISTEN unavailable; polling only")
            return
        self._conn = conn
        self.wake.set()  # whatever was committed while there was no LISTEN

    async def _keep_connection(self) -> None:
        """On PostgreSQL, connect again (same liveness token) after the connection was lost."""
        if self.ctx.engine.url.get_backend_name() != "postgresql":
            return
        if (self._conn is None or self._conn.is_closed()) and asyncio.get_running_loop().time() >= self._reconnect_at:
            await self.start()

    async def close(self) -> None:
        self.liveness.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def match_once(self) -> int:
        """Consume one batch of outbox rows; returns how many rows were consumed."""
        async with self.ctx.bookkeeping() as session, session.begin():
            rows = await claim_batch(session, self.batch_size)
            if not rows:
                return 0
            now = self._now()
            await match_rows(session, rows, base=self.ctx.settings.fhir_base, now=now, cache=self.cache)
            await mark_processed(session, [r.id for r in rows], now)
        if trace.on():
            trace.mark("matched", rows=[[r.res_type, r.res_id] for r in rows])
        if len(self.cache) > 10_000:
            self.cache.clear()
        return len(rows)

    async def _reclaim(self, session: Any, now: datetime) -> None:
        """Release the leases of other dispatchers whose process is gone (app/notify/liveness.py)."""
        s = subscription_state.c
        owners = set((await session.execute(
            select(s.lease_owner).distinct()
            .where(s.lease_owner.is_not(None), s.lease_owner != self.owner, s.lease_until >= now)
        )).scalars())
        clock = asyncio.get_running_loop().time()
        owners = {o for o in owners if self._alive.get(o, 0.0) <= clock}
        if not owners:
            return
        dead = await self.liveness.dead(owners)
        for o in owners - dead:  # checked again after a poll interval
            self._alive[o] = clock + self.poll_seconds
        if dead:
            await session.execute(
                update(subscription_state).where(s.lease_owner.in_(sorted(dead))).values(**FREE)
            )
            log.warning("took back the delivery leases of dispatchers that are gone",
                        extra={"owners": sorted(dead)})
        if len(self._alive) > 1000:
            self._alive.clear()

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
            .limit(DUE_PER_ROUND)
        )
        async with self.ctx.bookkeeping() as session, session.begin():
            await self._reclaim(session, now)
            rows = (await session.execute(stmt)).all()
            bound = self.ws.bound_subscriptions() if self.ws else set()
            leased = []
            for sub_id, channel in rows:
                if sub_id in self._inflight or (channel == "websocket" and sub_id not in bound):
                    continue
                if (taken := await lease(session, sub_id, self.owner, now, self.lease_seconds)) is not None:
                    self._leases[sub_id] = taken
                    leased.append(sub_id)
        if leased and trace.on():
            trace.mark("leased", subs=leased)
        return leased

    async def _deliver(self, sub: str) -> int:
        held = self._leases.pop(sub, None)
        if held is None:
            return 0
        return await deliver(self.ctx, held, http=self.http, ws=self.ws, retry=self.retry,
                             lease_seconds=self.lease_seconds, lost=self._lease_lost)

    def _lease_lost(self, held: Lease, stage: str) -> None:
        """A delivery's outcome came after its lease had gone to another dispatcher: nothing recorded."""
        self.leases_lost += 1
        if self.metrics is not None:
            self.metrics.notify_lease_lost.labels(stage).inc()
        log.warning("delivery lease lost before the outcome was recorded; the dispatcher holding it decides",
                    extra={"subscription": held.sub_id, "stage": stage, "owner": held.owner})

    async def start_deliveries(self) -> list[asyncio.Task[int]]:
        """Start a delivery task for each subscription with something due; returns them. Each task wakes
        the loop when it ends (its subscription may have more by then)."""
        tasks: list[asyncio.Task[int]] = []
        for sub in await self._due_subscriptions(self._now()):
            task: asyncio.Task[int] = asyncio.ensure_future(self._deliver(sub))
            self._inflight[sub] = task
            task.add_done_callback(functools.partial(self._delivery_ended, sub))
            tasks.append(task)
        return tasks

    def _delivery_ended(self, sub: str, task: asyncio.Task[int]) -> None:
        self._inflight.pop(sub, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery crashed", extra={"subscription": sub, "error": repr(task.exception())})
        self.wake.set()

    async def run_timers(self, force: bool = False) -> int:
        now = self._now()
        if not force and now - self._last_timers < timedelta(seconds=self.ctx.settings.notify_timer_seconds):
            return 0
        self._last_timers = now
        done = 0
        for timer in self.timers:
            try:
                done += await timer(self.ctx, now)
            except Exception:
                log.exception("timer failed")
        return done

    async def _match_all(self) -> int:
        work = 0
        while True:
            consumed = await self.match_once()
            work += consumed
            if consumed < self.batch_size:
                return work

    async def run_once(self, *, settle: bool = True) -> int:
        """One round of the loop (`run`): match what the outbox holds, start the deliveries due, run the
        timers; returns the work done (0 when idle). The loop's rounds do not wait for their deliveries
        (`settle=False`: a slow subscriber holds up no one); a round run alone (`settle`) waits for them
        before its timers and counts the events delivered, so what follows sees their outcome."""
        work = await self._match_all()
        started = await self.start_deliveries()
        self.due_left = len(started) >= DUE_PER_ROUND  # more may be due than one round looked at
        if settle:
            results = await asyncio.gather(*started, return_exceptions=True)  # a crash: `_delivery_ended` logs it
            work += sum(r for r in results if isinstance(r, int))
        else:
            work += len(started)
        work += await self.run_timers()
        return work

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        cause = "start"  # what started this round, for the benchmark's trace
        try:
            while not stop.is_set():
                if trace.on():
                    trace.mark("round", by=cause)
                # Cleared BEFORE looking for work: a commit (or a delivery ending) from here on sets it
                # again, and the wait below then returns at once (module docstring).
                # Nothing else calls for a round at once: what a round leaves to do comes with a wake-up
                # (a commit, a delivery that ended) or its time (a retry), except due subscriptions
                # beyond one query's limit.
                self.wake.clear()
                try:
                    await self._keep_connection()
                    await self.run_once(settle=False)
                    more = self.due_left
                except Exception as exc:  # noqa: BLE001 - keep the loop alive; the outbox keeps the work
                    self._round_failed(exc)
                    more = False
                else:
                    self._failing = None
                if more:
                    cause = "more"
                    continue
                cause = "poll"
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wait(stop), timeout=self.poll_seconds)
                    cause = "signal"
        finally:
            await self._finish_deliveries()
            await self.close()

    def _round_failed(self, exc: BaseException) -> None:
        """A database that is down, busy or not migrated is said once, in one line, until a round works
        again (it would otherwise log a traceback every poll); anything else is a bug: with its traceback."""
        failure = as_fhir_error(exc)
        if failure is None:
            log.exception("dispatcher round failed")
            return
        issue = failure.issues[0]
        if self._failing != issue.msg_id:
            log.warning("dispatcher waiting for the database: %s: %s", issue.msg_id, issue.diagnostics)
        self._failing = issue.msg_id

    async def _finish_deliveries(self, timeout: float = 8.0) -> None:
        """Let running deliveries end (their leases are released); cancel what is still running then."""
        tasks = list(self._inflight.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
