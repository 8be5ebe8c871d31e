"""The live-update stream (app/web/live.py) on both databases: event numbers come from the outbox, a new
notice is announced, and a page that reconnects with an older Last-Event-ID is told at once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from app.context import AppContext
from app.web import live
from tests.conftest import StepClock
from tests.web.pages_data import attend, ed, seed

BOUND = 10.0  # seconds: a bound on waiting, not a timing assertion


async def test_a_new_notice_is_announced_and_a_reconnection_catches_up(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    await seed(client, clock.now().date())
    feed = live.LiveFeed(clean_ctx.engine, poll_seconds=0.05)
    before = await live.newest_event(clean_ctx.engine)
    events = live.stream(feed, None)
    assert await anext(events) == f"retry: {live.RETRY_MS}\n\n"
    assert await anext(events) == live.event(before, "ready")
    await attend(client, ed(auth), "2026-01-05T08:30:00Z")  # the Encounter, its notice and Task
    after = await live.newest_event(clean_ctx.engine)
    assert after > before
    announced = await asyncio.wait_for(anext(events), BOUND)
    assert announced.startswith("id: ") and announced.split("\n")[1] == "event: changed"
    assert before < int(announced.split("\n")[0][4:]) <= after
    await events.aclose()
    assert feed._task is None  # the poller stops with its last listener

    # a page away since `before` reconnects with Last-Event-ID and is told at once
    again = live.stream(feed, before)
    await anext(again)
    assert await anext(again) == live.event(after, "changed")
    await again.aclose()
    # an up-to-date page is only greeted
    current = live.stream(feed, after)
    await anext(current)
    assert await anext(current) == live.event(after, "ready")
    await current.aclose()


async def test_an_idle_stream_keeps_the_connection_alive() -> None:
    class Still(live.LiveFeed):
        async def wait_past(self, number: int, timeout: float) -> int:
            return number

    feed = Still(engine=None)  # type: ignore[arg-type]
    feed._task = asyncio.create_task(asyncio.sleep(0))  # listening() needs no database while one is running
    feed._listeners = 1
    events = live.stream(feed, 7)
    assert [await anext(events) for _ in range(3)] == [
        f"retry: {live.RETRY_MS}\n\n", live.event(0, "changed"), ": keep-alive\n\n"]
    await events.aclose()


def test_last_event_id_is_a_plain_number_or_ignored() -> None:
    assert [live.last_event_id(v) for v in ("12", None, "", "-1", "1e3", "٣", "9" * 19)] == [
        12, None, None, None, None, None, None]
