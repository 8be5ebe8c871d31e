"""Delivery leases after a crash, and one subscriber's stall (contract section 6), on both databases.

- A lease whose dispatcher is gone is taken back by the next round of any other dispatcher, however
  long the lease had to run: the gone process's liveness lock (a PostgreSQL session advisory lock, a
  flock next to the SQLite file; app/notify/liveness.py) is what tells. Here the "gone" dispatcher
  loses its lock the way a killed process does (its database session or its file lock ends without
  releasing a lease); tests/e2e/test_crash_recovery.py kills a real server process.
- A live dispatcher's lease is respected.
- A subscriber that holds the request open delays only its own subscription's notices.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import select

from app.context import AppContext
from app.notify.delivery import RetryPolicy
from app.notify.dispatcher import Dispatcher
from app.storage.notify_tables import subscription_state
from tests.notify.conftest import BACKPORT, notice, subscription
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
