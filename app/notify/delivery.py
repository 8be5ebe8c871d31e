"""Deliver one subscription's pending notifications, in event-number order, under a lease.

A lease (`subscription_state.lease_owner/lease_until`) makes one dispatcher the only sender for a
subscription at a time, so two workers never deliver the same claim; a worker killed mid-delivery
loses its lease when it expires and another re-sends (at-least-once, duplicates detectable by event
number). Each lease carries a token of its own, and every state change after a send (events marked
delivered, a retry scheduled, a status set) is made only while that lease is still held: same owner,
same token, checked in the UPDATE that makes the change. A worker that stalled past its lease, while
another took the subscription over, changes nothing; it reports the lost lease (`LeaseLost`) and the
holder's outcome stands, so a retry the holder scheduled is never overwritten nor an event marked
delivered under it. Failures back off exponentially with jitter; after the retry window (24 h by default) the
subscription goes to `error` and its events stay available through `$events`.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import and_, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import FhirError
from app.notify import trace
from app.notify.bundle import Event, notification_bundle
from app.notify.channels import rest_hook
from app.notify.channels.websocket import WebSocketRegistry
from app.notify.subscriptions import SubscriptionSpec, parse_spec
from app.ports import UnitOfWork
from app.storage.notify_tables import notification, subscription_state
from app.storage.repository import utc_ms
from app.storage.tables import resource, resource_version

BUNDLES_PER_LEASE = 20  # then the lease goes back, so that other work (and dispatchers) get their turn


@dataclass
class RetryPolicy:
    base_seconds: float = 1.0
    cap_seconds: float = 3600.0
    window: timedelta = timedelta(hours=24)

    def delay(self, attempts: int) -> timedelta:
        raw = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return timedelta(seconds=raw * random.uniform(0.5, 1.5))


@dataclass(frozen=True)
class Lease:
    """One lease of one subscription: who took it and the token that tells this lease from any other."""

    sub_id: str
    owner: str
    token: str


LeaseLost = Callable[[Lease, str], None]  # (the lease, what it was about to record): log and count it
FREE = {"lease_owner": None, "lease_until": None, "lease_token": None}


def _now(ctx: UnitOfWork) -> datetime:
    return utc_ms(ctx.clock.now())


def _held(held: Lease) -> Any:
    s = subscription_state.c
    return and_(s.sub_id == held.sub_id, s.lease_owner == held.owner, s.lease_token == held.token)


async def lease(session: AsyncSession, sub_id: str, owner: str, now: datetime, seconds: float) -> Lease | None:
    s = subscription_state.c
    token = secrets.token_hex(8)
    result = await session.execute(
        update(subscription_state)
        .where(s.sub_id == sub_id, or_(s.lease_until.is_(None), s.lease_until < now))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds), lease_token=token)
    )
    return Lease(sub_id, owner, token) if result.rowcount == 1 else None  # type: ignore[attr-defined]


async def release(ctx: UnitOfWork, held: Lease, **values: Any) -> bool:
    """Give the lease back, recording `values`, if it is still held; False (nothing changed) if not."""
    async with ctx.bookkeeping() as session, session.begin():
        result = await session.execute(update(subscription_state).where(_held(held)).values(**FREE, **values))
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def set_status(
    ctx: UnitOfWork, sub_id: str, status: str, error: str | None = None, *, held: Lease | None = None,
    **state: Any,
) -> bool:
    """Server-side status change: a new Subscription version (one writer) and the mirrored state. The
    Subscription is read locked (`get_for_write`), so a client's write of it under way finishes first
    and the status goes on top of it (never a 409 for the server's own write, never a lost update).
    With `held`, only while that lease is still held: it is given back (recording `state`) in the same
    transaction; False, and nothing changed, when another dispatcher has the subscription now."""
    async with ctx.unit_of_work() as svc:
        current = await svc.repo.get_for_write("Subscription", sub_id)
        if held is not None:
            kept = await svc.session.execute(update(subscription_state).where(_held(held)).values(**FREE, **state))
            if kept.rowcount != 1:  # type: ignore[attr-defined]
                return False
        if current is None or current.deleted:
            return True
        content = {k: v for k, v in current.content.items() if k not in ("error",)}
        content["status"] = status
        if error:
            content["error"] = error[:1000]
        await svc.repo.update(current, content)
        await svc.session.execute(
            update(subscription_state)
            .where(subscription_state.c.sub_id == sub_id)
            .values(status=status, handshake_due=0, last_error=error)
        )
    return True


@dataclass
class _Work:
    spec: SubscriptionSpec
    state: Any
    events: list[Event]


async def _load(ctx: UnitOfWork, held: Lease, lease_seconds: float) -> _Work | None:
    sub_id = held.sub_id
    async with ctx.bookkeeping() as session, session.begin():
        state = (
            await session.execute(select(subscription_state).where(subscription_state.c.sub_id == sub_id))
        ).first()
        res = (
            await session.execute(
                select(resource.c.content, resource.c.deleted).where(
                    resource.c.res_type == "Subscription", resource.c.res_id == sub_id
                )
            )
        ).first()
        if state is None or res is None or res.deleted or state.status not in ("requested", "active"):
            return None
        try:
            spec = parse_spec(sub_id, res.content, base=ctx.settings.fhir_base, webhook_allow=ctx.settings.webhook_hosts)
        except FhirError:
            return _Work(None, state, [])  # type: ignore[arg-type]  # handled by caller as an error
        n = notification.c
        rows = (
            await session.execute(
                select(n.event_number, n.occurred_at, n.focus_type, n.focus_id, n.focus_version, n.action)
                .where(n.sub_id == sub_id, n.delivered_at.is_(None))
                .order_by(n.event_number)
                .limit(spec.max_count)
            )
        ).all()
        events = await _events(session, spec, list(rows))
        # The lease must outlive this send (up to the channel timeout) so that no other dispatcher
        # sends the same events meanwhile; a killed dispatcher's lease still runs out. Renewed last, so
        # that the state row (which the matcher numbers events on) is locked only until the commit.
        renewed = await session.execute(
            update(subscription_state)
            .where(_held(held))
            .values(lease_until=_now(ctx) + timedelta(seconds=spec.timeout_seconds + lease_seconds))
        )
        if renewed.rowcount != 1:  # type: ignore[attr-defined]
            return None  # the lease ran out and another dispatcher has the subscription now
        return _Work(spec, state, events)


async def _events(session: AsyncSession, spec: SubscriptionSpec, rows: list[Any]) -> list[Event]:
    """The pending events with their focus versions, read in one query."""
    v = resource_version.c
    keys = {(r.focus_type, r.focus_id, r.focus_version) for r in rows}
    contents: dict[tuple[str, str, int], dict[str, Any] | None] = {}
    if keys:
        stmt = select(v.res_type, v.res_id, v.version_id, v.content).where(
            tuple_(v.res_type, v.res_id, v.version_id).in_(sorted(keys))
        )
        contents = {(t, i, n): c for t, i, n, c in (await session.execute(stmt)).all()}
    out = []
    for row in rows:
        content = contents.get((row.focus_type, row.focus_id, row.focus_version))
        out.append(Event(
            number=int(row.event_number),
            occurred_at=row.occurred_at,
            focus_type=row.focus_type,
            focus_id=row.focus_id,
            focus_version=row.focus_version,
            action=row.action,
            resource=content if spec.content == "full-resource" else None,
            context=tuple(_context_refs(content)),
        ))
    return out


def _context_refs(content: dict[str, Any] | None) -> list[str]:
    """The patient and encounter a notice is about, as additional context."""
    if not content:
        return []
    out = []
    for key in ("subject", "for", "encounter"):
        ref = (content.get(key) or {}).get("reference") if isinstance(content.get(key), dict) else None
        if isinstance(ref, str) and "/" in ref and "://" not in ref and ref not in out:
            out.append(ref)
    return out


async def _send(
    ctx: UnitOfWork, spec: SubscriptionSpec, secret: str | None, body: bytes, http: httpx.AsyncClient,
    ws: WebSocketRegistry | None,
) -> rest_hook.DeliveryResult:
    if spec.channel_type == "websocket":
        ok = ws is not None and await ws.send(spec.id, body.decode())
        return rest_hook.DeliveryResult(ok, None if ok else "no websocket bound")
    return await rest_hook.post(
        http, endpoint=spec.endpoint or "", body=body, secret=secret, headers=spec.headers,
        timeout=spec.timeout_seconds, allow=ctx.settings.webhook_hosts,
    )


def _ignore(held: Lease, stage: str) -> None:
    return None


async def deliver(
    ctx: UnitOfWork, held: Lease, *, http: httpx.AsyncClient, ws: WebSocketRegistry | None,
    retry: RetryPolicy, lease_seconds: float = 30.0, lost: LeaseLost = _ignore,
) -> int:
    """Send what is due for one leased subscription; returns the number of events delivered. A backlog
    goes out as several full bundles under the same lease (two transactions a bundle, no new round).
    An outcome the lease no longer allows to record is reported to `lost` and changes nothing."""
    delivered = 0
    for _ in range(BUNDLES_PER_LEASE):
        count, kept = await _deliver_one(ctx, held, http=http, ws=ws, retry=retry, lease_seconds=lease_seconds,
                                         lost=lost)
        delivered += count
        if not kept:
            return delivered
    await release(ctx, held)
    return delivered


async def _deliver_one(
    ctx: UnitOfWork, held: Lease, *, http: httpx.AsyncClient, ws: WebSocketRegistry | None,
    retry: RetryPolicy, lease_seconds: float, lost: LeaseLost,
) -> tuple[int, bool]:
    """One bundle (or handshake, or heartbeat); (events delivered, lease still held for another bundle)."""
    sub_id = held.sub_id
    work = await _load(ctx, held, lease_seconds)
    if work is None:
        await release(ctx, held)
        return 0, False
    if work.spec is None:
        if not await set_status(ctx, sub_id, "error", "subscription is no longer valid on this server", held=held):
            lost(held, "error")
        return 0, False
    spec, state = work.spec, work.state
    if spec.channel_type == "websocket" and (ws is None or not ws.bound(sub_id)):
        await release(ctx, held)  # stays pending until a client binds (then $events replays)
        return 0, False
    base = ctx.settings.fhir_base
    now = _now(ctx)
    if state.handshake_due:
        body = orjson.dumps(notification_bundle(
            fhir_base=base, sub_id=sub_id, topic_url=spec.topic.url, status="requested", type_="handshake",
            events_since_start=int(state.event_count), now=now, content=spec.content,
        ))
        result = await _send(ctx, spec, state.secret, body, http, ws)
        if not await set_status(ctx, sub_id, "active" if result.ok else "error",
                                None if result.ok else f"handshake failed: {result.error}", held=held,
                                last_sent_at=now if result.ok else state.last_sent_at):
            lost(held, "handshake")
        return 0, False
    if work.events:
        if trace.on():
            trace.mark("loaded", sub=sub_id, events=[[e.focus_id, list(e.context)] for e in work.events])
        body = orjson.dumps(notification_bundle(
            fhir_base=base, sub_id=sub_id, topic_url=spec.topic.url, status="active", type_="event-notification",
            events_since_start=int(state.event_count), now=now, events=work.events, content=spec.content,
        ))
        result = await _send(ctx, spec, state.secret, body, http, ws)
        numbers = [e.number for e in work.events]
        if trace.on():
            trace.mark("sent", sub=sub_id, numbers=numbers, ok=result.ok)
        if not result.ok:
            await _failed(ctx, held, state, now, retry, result.error or "delivery failed", lost)
            return 0, False
        more = len(numbers) == spec.max_count  # a full bundle: there may be a backlog behind it
        if not await _delivered(ctx, held, numbers, now, keep_lease=more):
            lost(held, "delivered")
            return 0, False
        if trace.on():
            trace.mark("delivered", sub=sub_id, numbers=numbers)
        return len(numbers), more
    if spec.heartbeat_seconds and (
        state.last_sent_at is None or state.last_sent_at + timedelta(seconds=spec.heartbeat_seconds) <= now
    ):
        body = orjson.dumps(notification_bundle(
            fhir_base=base, sub_id=sub_id, topic_url=spec.topic.url, status="active", type_="heartbeat",
            events_since_start=int(state.event_count), now=now, content=spec.content,
        ))
        result = await _send(ctx, spec, state.secret, body, http, ws)
        if not result.ok:
            await _failed(ctx, held, state, now, retry, result.error or "heartbeat failed", lost)
        elif not await release(ctx, held, last_sent_at=now):
            lost(held, "heartbeat")
        return 0, False
    await release(ctx, held)
    return 0, False


async def _delivered(ctx: UnitOfWork, held: Lease, numbers: list[int], now: datetime, *, keep_lease: bool) -> bool:
    """Mark the events delivered and give the lease back (unless another bundle follows), in one
    transaction, only while the lease is held (the state row first: its UPDATE is the check); False
    and nothing changed when it is not."""
    n = notification.c
    async with ctx.bookkeeping() as session, session.begin():
        kept = await session.execute(
            update(subscription_state)
            .where(_held(held))
            .values(last_sent_at=now, attempts=0, failing_since=None, next_attempt_at=None, last_error=None,
                    **({} if keep_lease else FREE))
        )
        if kept.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await session.execute(
            update(notification)
            .where(and_(n.sub_id == held.sub_id, n.event_number.in_(numbers), n.delivered_at.is_(None)))
            .values(delivered_at=now, attempts=n.attempts + 1)
        )
    return True


async def _failed(
    ctx: UnitOfWork, held: Lease, state: Any, now: datetime, retry: RetryPolicy, error: str, lost: LeaseLost
) -> None:
    attempts = int(state.attempts or 0) + 1
    failing_since = state.failing_since or now
    if now - failing_since >= retry.window:
        kept = await set_status(ctx, held.sub_id, "error",
                                f"delivery failing since {failing_since.isoformat()}Z: {error}",
                                held=held, attempts=attempts)
    else:
        kept = await release(
            ctx, held, attempts=attempts, failing_since=failing_since, last_error=error,
            next_attempt_at=now + retry.delay(attempts),
        )
    if not kept:
        lost(held, "failed")
