"""Wake-ups of the dispatcher loop (contract section 6): a committed notice never waits for a poll.

The dispatcher loop checks for work, and sleeps until it is woken (the in-process signal set after a
commit, PostgreSQL's NOTIFY) or the poll interval passes. A notice committed while the loop is still
in a round that has already looked at the outbox and found nothing must wake the next round: the
wake-up may not be lost. These tests set the poll interval to an hour, so a lost wake-up shows as a
notice that never arrives, and commit the notice at exactly that moment, from a timer (the loop runs
its timers after matching and delivery, when it has seen no work). Both databases.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from app.context import AppContext
from app.notify.delivery import RetryPolicy
from app.notify.dispatcher import Dispatcher
from tests.notify.conftest import notice, subscription
from tests.support.receiver import Receiver

HOUR = 3600.0


@pytest.fixture
def slow_poll_ctx(notify_ctx: AppContext, receiver: Receiver) -> AppContext:
    """The same database, wake-up signal and app as `api`, with an hour's poll and timers every round
    (and the receiver's port allowed, as `api` allows it)."""
    settings = notify_ctx.settings.model_copy(update={"notify_poll_seconds": HOUR, "notify_timer_seconds": 0.0,
                                                      "webhook_allow": f"127.0.0.1:{receiver.port}"})
    return dataclasses.replace(notify_ctx, settings=settings)


@pytest.fixture
async def running() -> AsyncIterator[list[tuple[Dispatcher, asyncio.Event, asyncio.Task[None]]]]:
    started: list[tuple[Dispatcher, asyncio.Event, asyncio.Task[None]]] = []
    yield started
    for _d, stop, task in started:
        stop.set()
        await asyncio.wait_for(task, 30)


def _start(d: Dispatcher, running: list[tuple[Dispatcher, asyncio.Event, asyncio.Task[None]]]) -> None:
    stop = asyncio.Event()
    running.append((d, stop, asyncio.create_task(d.run(stop))))


async def _settle(d: Dispatcher) -> None:
    """Rounds until one finds nothing to do (handshake sent, outbox empty)."""
    while await d.run_once():
        pass


async def test_notice_committed_after_the_idle_check_wakes_the_next_round(
    slow_poll_ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver,
    running: list[tuple[Dispatcher, asyncio.Event, asyncio.Task[None]]],
) -> None:
    posted: list[str] = []

    async def attend_now(_ctx: AppContext, _now: datetime) -> int:
        """A timer that commits one notice in the middle of an idle round (once, when armed)."""
        if armed.is_set() and not posted:
            resp = await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))
            assert resp.status_code == 201, resp.text
            posted.append(resp.json()["id"])
        return 0

    armed = asyncio.Event()
    d = Dispatcher(slow_poll_ctx, timers=[attend_now], retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2))
    assert d.poll_seconds == HOUR
    resp = await api.post("/fhir/Subscription", json=subscription(receiver.url))
    assert resp.status_code == 201, resp.text
    await _settle(d)
    assert len(receiver.of_type("handshake")) == 1 and receiver.events() == []
    armed.set()
    _start(d, running)
    # the first round finds no work, its timer commits the notice: the round after it must send it,
    # not the poll an hour later
    await receiver.wait_for(lambda: receiver.events() == [1], timeout=15)
    focus = receiver.of_type("event-notification")[0].json["entry"][0]["resource"]["parameter"]
    assert posted and any(posted[0] in str(p) for p in focus)


async def test_notice_committed_during_another_delivery_is_sent_after_it(
    slow_poll_ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver,
    running: list[tuple[Dispatcher, asyncio.Event, asyncio.Task[None]]],
) -> None:
    """Sequential attendances: each posted once the previous one's 201 is back, while the loop is busy
    delivering or has just found nothing. With an hour's poll, every one must still arrive."""
    d = Dispatcher(slow_poll_ctx, retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2))
    resp = await api.post("/fhir/Subscription", json=subscription(receiver.url))
    assert resp.status_code == 201, resp.text
    await _settle(d)
    _start(d, running)
    for i in range(1, 31):
        resp = await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))
        assert resp.status_code == 201, resp.text
        await asyncio.sleep(0.002 * (i % 7))  # land at different points of the loop's round
    await receiver.wait_for(lambda: sorted(set(receiver.events())) == list(range(1, 31)), timeout=15)
