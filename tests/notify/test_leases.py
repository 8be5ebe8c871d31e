"""Delivery leases after a crash, and one subscriber's stall (contract section 6), on both databases.

- A lease whose dispatcher is gone is taken back by the next round of any other dispatcher, however
  long the lease had to run: the gone process's liveness lock (a PostgreSQL session advisory lock, a
  flock next to the SQLite file; app/notify/liveness.py) is what tells. Here the "gone" dispatcher
  loses its lock the way a killed process does (its database session or its file lock ends without
  releasing a lease); tests/e2e/test_crash_recovery.py kills a real server process.
- A live dispatcher's lease is respected.
- A subscriber that holds the request open delays only its own subscription's notices.
- A dispatcher that stalls past its lease while another takes the subscription over records nothing of
  its send's outcome (events delivered, a retry, a status): it logs and counts the lost lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from app.context import AppContext
from app.notify.delivery import RetryPolicy
from app.notify.dispatcher import Dispatcher
from app.observability import Metrics
from app.storage.notify_tables import notification, subscription_state
from tests.notify.conftest import BACKPORT, notice, subscription
from tests.notify.ed_data import CLOCK
from tests.support.receiver import Receiver

HOUR = 3600.0


@pytest.fixture
async def dispatchers(notify_ctx: AppContext) -> AsyncIterator[Callable[..., Dispatcher]]:
    made: list[Dispatcher] = []

    def make(**kw: object) -> Dispatcher:
        d = Dispatcher(notify_ctx, retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2), **kw)  # type: ignore[arg-type]
        made.append(d)
        return d

    yield make
    for d in made:
        await d.close()


async def _subscribe(api: httpx.AsyncClient, d: Dispatcher, r: Receiver, timeout_s: int | None = None) -> str:
    sub = subscription(r.url)
    if timeout_s:
        sub["channel"]["extension"] = [{"url": BACKPORT + "backport-timeout", "valueUnsignedInt": timeout_s}]
    resp = await api.post("/fhir/Subscription", json=sub)
    assert resp.status_code == 201, resp.text
    while await d.run_once():
        pass
    assert len(r.of_type("handshake")) == 1
    return str(resp.json()["id"])


async def _lease(ctx: AppContext, sub_id: str) -> tuple[str | None, object]:
    s = subscription_state.c
    async with ctx.sessionmaker() as session:
        row = (await session.execute(select(s.lease_owner, s.lease_until).where(s.sub_id == sub_id))).one()
    return row.lease_owner, row.lease_until


async def _hold_lease(d: Dispatcher, api: httpx.AsyncClient) -> None:
    """`d` matches a new notice and leases its subscription, as at the start of a delivery."""
    resp = await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))
    assert resp.status_code == 201, resp.text
    assert await d._match_all() == 1
    assert len(await d._due_subscriptions(d._now())) == 1


async def _lose_liveness(d: Dispatcher) -> None:
    """What the end of a process does to its liveness lock (nothing else: its lease stays written)."""
    if d._conn is not None:
        await d._conn.close()  # PostgreSQL ends the session and its advisory lock
    else:
        d.liveness.close()  # the kernel drops a dead process's flock


async def test_lease_of_a_gone_dispatcher_is_taken_back_at_once(
    notify_ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver, dispatchers: Callable[..., Dispatcher],
) -> None:
    gone = dispatchers(lease_seconds=HOUR)
    await gone.start()
    sub_id = await _subscribe(api, gone, receiver)
    await _hold_lease(gone, api)
    owner, until = await _lease(notify_ctx, sub_id)
    assert owner == gone.owner and until is not None
    await _lose_liveness(gone)

    fresh = dispatchers()
    await fresh.start()
    assert fresh.owner != gone.owner
    await fresh.run_once()  # one round: the lease (an hour left) is taken back and the notice sent
    assert receiver.events() == [1]
    assert await _lease(notify_ctx, sub_id) == (None, None)


async def test_lease_of_a_live_dispatcher_is_respected(
    notify_ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver, dispatchers: Callable[..., Dispatcher],
) -> None:
    alive = dispatchers(lease_seconds=HOUR)
    await alive.start()
    sub_id = await _subscribe(api, alive, receiver)
    await _hold_lease(alive, api)

    other = dispatchers()
    await other.start()
    await other.run_once()
    assert receiver.events() == []  # the live holder keeps its subscription
    assert (await _lease(notify_ctx, sub_id))[0] == alive.owner
    assert await alive._deliver(sub_id) == 1  # the holder goes on with its delivery
    assert receiver.events() == [1]
    assert await _lease(notify_ctx, sub_id) == (None, None)


async def test_a_stalled_subscriber_does_not_hold_back_other_subscriptions(
    notify_ctx: AppContext, api: httpx.AsyncClient, dispatchers: Callable[..., Dispatcher],
) -> None:
    d = dispatchers()
    async with Receiver() as stalled, Receiver() as prompt:
        notify_ctx.settings.webhook_allow += f",127.0.0.1:{stalled.port},127.0.0.1:{prompt.port}"
        await _subscribe(api, d, stalled, timeout_s=60)
        await _subscribe(api, d, prompt)
        stalled.hold = asyncio.Event()  # accepts each notification and does not answer
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        try:
            first = await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))
            assert first.status_code == 201, first.text
            await prompt.wait_for(lambda: prompt.events() == [1])
            await stalled.wait_for(lambda: stalled.open_requests == 1)
            second = await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))
            assert second.status_code == 201, second.text
            # while the stalled subscriber still has event 1 open, the other one gets event 2
            await prompt.wait_for(lambda: prompt.events() == [1, 2])
            assert stalled.open_requests == 1 and stalled.events() == [1]
            stalled.hold.set()
            await stalled.wait_for(lambda: stalled.events() == [1, 2])
        finally:
            stalled.hold.set()
            stop.set()
            await asyncio.wait_for(task, 30)


async def _state(ctx: AppContext, sub_id: str) -> dict[str, object]:
    s = subscription_state.c
    async with ctx.sessionmaker() as session:
        row = (await session.execute(
            select(s.status, s.lease_owner, s.lease_token, s.attempts, s.last_error, s.next_attempt_at,
                   s.failing_since, s.last_sent_at).where(s.sub_id == sub_id)
        )).one()
    return dict(row._mapping)


async def _pending(ctx: AppContext, sub_id: str) -> list[int]:
    n = notification.c
    async with ctx.sessionmaker() as session:
        rows = await session.execute(
            select(n.event_number).where(n.sub_id == sub_id, n.delivered_at.is_(None)).order_by(n.event_number)
        )
    return [int(x) for x in rows.scalars()]


async def _stall_past_lease(d: Dispatcher, sub_id: str, receiver: Receiver) -> tuple[asyncio.Task[int], asyncio.Event]:
    """`d` sends under its lease and the subscriber holds the request open; the clock then moves an hour
    on, so the lease (the channel timeout plus the lease time) has run out while `d` still waits."""
    stalled = receiver.hold = asyncio.Event()
    task = asyncio.create_task(d._deliver(sub_id))
    await receiver.wait_for(lambda: receiver.open_requests == 1)
    receiver.hold = None  # later requests are answered at once
    CLOCK.reset(CLOCK.now() + timedelta(hours=1))
    return task, stalled


async def test_a_delivery_that_outlived_its_lease_records_nothing(
    notify_ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver, dispatchers: Callable[..., Dispatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sends event 1 and stalls past its lease; B takes the subscription over, its send fails and it
    schedules a retry; then A's send succeeds. A changes nothing (the event stays pending, B's retry
    stands), logs and counts the lost lease; B's retry then delivers the event and marks it."""
    metrics = Metrics()
    a, b = dispatchers(metrics=metrics), dispatchers()
    sub_id = await _subscribe(api, a, receiver, timeout_s=60)
    await _hold_lease(a, api)
    task, stalled = await _stall_past_lease(a, sub_id, receiver)

    receiver.status = 503
    assert await b.run_once() == 0  # B leased the subscription (A's lease ran out) and its send failed
    after_b = await _state(notify_ctx, sub_id)
    assert after_b["attempts"] == 1 and after_b["last_error"] == "endpoint answered HTTP 503"
    assert after_b["next_attempt_at"] is not None and after_b["lease_owner"] is None

    receiver.status = 200
    stalled.set()
    with caplog.at_level(logging.WARNING, logger="safeflag.dispatcher"):
        assert await asyncio.wait_for(task, 30) == 0  # delivered, but not A's to record
    assert await _state(notify_ctx, sub_id) == after_b  # B's retry stands, nothing of A's outcome
    assert await _pending(notify_ctx, sub_id) == [1]
    assert (a.leases_lost, b.leases_lost) == (1, 0)
    assert metrics.registry.get_sample_value("safeflag_notify_lease_lost_total", {"stage": "delivered"}) == 1.0
    lost = [r for r in caplog.records if r.getMessage().startswith("delivery lease lost")]
    assert [(r.subscription, r.stage, r.owner) for r in lost] == [(sub_id, "delivered", a.owner)]  # type: ignore[attr-defined]

    CLOCK.reset(CLOCK.now() + timedelta(hours=1))  # B's retry is due
    assert await b.run_once() == 1
    assert receiver.events() == [1, 1]  # at least once: the second copy carries the same event number
    assert await _pending(notify_ctx, sub_id) == []
    state = await _state(notify_ctx, sub_id)
    assert (state["attempts"], state["last_error"], state["next_attempt_at"], state["lease_owner"]) == (0, None, None, None)


async def test_a_handshake_that_outlived_its_lease_does_not_set_the_status(
    notify_ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver, dispatchers: Callable[..., Dispatcher],
) -> None:
    """A's handshake stalls past its lease; B's handshake succeeds and activates the subscription; A's
    then fails. The subscription stays active (before, A's late failure set it to error, and its
    notices went nowhere) and keeps the one version B's activation made."""
    a, b = dispatchers(), dispatchers()
    sub = subscription(receiver.url)
    sub["channel"]["extension"] = [{"url": BACKPORT + "backport-timeout", "valueUnsignedInt": 60}]
    resp = await api.post("/fhir/Subscription", json=sub)
    assert resp.status_code == 201, resp.text
    sub_id = resp.json()["id"]
    assert await a._due_subscriptions(a._now()) == [sub_id]
    task, stalled = await _stall_past_lease(a, sub_id, receiver)

    await b.run_once()
    assert len(receiver.of_type("handshake")) == 2  # A's (still open) and B's
    active = (await api.get(f"/fhir/Subscription/{sub_id}")).json()
    assert (active["status"], active["meta"]["versionId"]) == ("active", "2")

    receiver.status = 503
    stalled.set()
    await asyncio.wait_for(task, 30)
    assert a.leases_lost == 1
    now = (await api.get(f"/fhir/Subscription/{sub_id}")).json()
    assert (now["status"], now["meta"]["versionId"], "error" in now) == ("active", "2", False)
    state = await _state(notify_ctx, sub_id)
    assert (state["status"], state["last_error"], state["lease_owner"], state["lease_token"]) == ("active", None, None, None)
