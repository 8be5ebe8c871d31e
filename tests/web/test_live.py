"""The live-update stream (app/web/live.py) on both databases: a committed change wakes exactly the streams
whose reader may read it through /fhir (the policy's own decision), positions leave the server sealed,
a reconnection is told to catch up, an outbox id committed late is not skipped, and closing the feed
ends every stream. The decision is the app's injected policy (`AppContext.policy`), not a second path."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import insert

from app.context import AppContext
from app.demo import borough as b
from app.security.decision import Decision
from app.security.policy import decide
from app.security.principal import Principal
from app.storage.notify_tables import outbox_event
from app.web import live
from app.web.positions import TOKEN_LENGTH, Positions
from tests.conftest import StepClock
from tests.web.pages_data import HV, LEAD, OTHER, OTHER_HV, OTHER_ORG, SEXUAL_HEALTH, attend, ed, seed
from tests.web.test_dev_sign_in import _app_client, _csrf

BOUND = 10.0  # seconds: a bound on waiting, not a timing assertion
Auth = Any


async def enriched(ctx: AppContext, who: Principal) -> Principal:
    """The principal as the stream holds it: enriched by a unit of work, as the pages are."""
    async with ctx.unit_of_work(who) as svc:
        assert svc.principal is not None
        return svc.principal


async def newest(ctx: AppContext) -> int:
    async with ctx.sessionmaker() as session:
        return await live.newest_in(session)


def feed_of(ctx: AppContext) -> live.LiveFeed:
    return live.LiveFeed(ctx.engine, Positions.random(), ctx.policy, poll_seconds=0.02)


async def test_a_change_wakes_only_the_readers_who_may_read_it_through_the_api(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await seed(client, clock.now().date())
    readers = {"hv": (await enriched(clean_ctx, HV), auth("health-visitor", org=b.ZERO19, practitioner=b.HV)),
               "lead": (await enriched(clean_ctx, LEAD), auth("safeguarding-lead", org=b.ZERO19, practitioner=b.LEAD)),
               "other": (await enriched(clean_ctx, OTHER), auth("health-visitor", org=OTHER_ORG, practitioner=OTHER_HV))}
    feed = feed_of(clean_ctx)
    feed.cursor = await newest(clean_ctx)
    seen: dict[str, list[live.Change]] = {}

    await attend(client, ed(auth), "2026-01-05T08:30:00Z")  # the demo 0-19 service's notice and Task
    seen["attendance"] = await feed.read()
    # the sexual health service writes to the demo 0-19 service: labelled restricted as it is stored
    sh = auth("sexual-health-clinician", org=SEXUAL_HEALTH)
    r = await client.post("/fhir/Communication", headers=sh, json={
        "resourceType": "Communication", "status": "completed", "subject": {"reference": b.CHILD},
        "recipient": [{"reference": b.ZERO19}], "sender": {"reference": SEXUAL_HEALTH},
        "payload": [{"contentString": "Seen at the clinic"}]})
    assert r.status_code == 201, r.text
    seen["sexual-health"] = await feed.read()
    r = await client.post("/fhir/Communication", headers=readers["other"][1], json={
        "resourceType": "Communication", "status": "completed", "subject": {"reference": b.CHILD},
        "sender": {"reference": OTHER_HV}, "payload": [{"contentString": "A note of the other service"}]})
    assert r.status_code == 201, r.text
    seen["other"] = await feed.read()

    assert {k: sorted(c.res_type for c in v) for k, v in seen.items()} == {
        "attendance": ["Communication", "Task"], "sexual-health": ["Communication"], "other": ["Communication"]}
    told = {(what, who): [live.concerns(clean_ctx.policy, principal, c) for c in seen[what]]
            for what in seen for who, (principal, _h) in readers.items()}
    assert told == {
        ("attendance", "hv"): [True, True], ("attendance", "lead"): [True, True], ("attendance", "other"): [False, False],
        ("sexual-health", "hv"): [False], ("sexual-health", "lead"): [True], ("sexual-health", "other"): [False],
        ("other", "hv"): [False], ("other", "lead"): [True], ("other", "other"): [True]}  # leads read every Communication
    for (what, who), answers in told.items():  # exactly what the same user reads through /fhir
        for change, answer in zip(seen[what], answers, strict=True):
            read = await client.get(f"/fhir/{change.res_type}/{change.res_id}", headers=readers[who][1])
            assert (read.status_code == 200) is answer, (what, who, read.status_code)

    woken = {who: live.Reader(principal) for who, (principal, _h) in readers.items()}
    feed.readers.update(woken.values())
    feed.tell(seen["sexual-health"])
    assert {who: r.woken.is_set() for who, r in woken.items()} == {"hv": False, "lead": True, "other": False}
    feed.tell(seen["other"])
    assert {who: r.woken.is_set() for who, r in woken.items()} == {"hv": False, "lead": True, "other": True}


async def test_the_stream_tells_its_reader_and_a_reconnection_catches_up(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await seed(client, clock.now().date())
    feed = feed_of(clean_ctx)
    hv, other = await enriched(clean_ctx, HV), await enriched(clean_ctx, OTHER)
    mine, theirs = live.stream(feed, hv, None), live.stream(feed, other, None)
    assert await anext(mine) == f"retry: {live.RETRY_MS}\n\n"
    ready = await anext(mine)
    await anext(theirs)
    greeting = await anext(theirs)
    assert [ready.split("\n")[1:], greeting.split("\n")[1:]] == [["event: ready", "data: ready", "", ""]] * 2
    ids = [ready.split("\n")[0].removeprefix("id: "), greeting.split("\n")[0].removeprefix("id: ")]
    assert ids[0] != ids[1] and all(len(i) == TOKEN_LENGTH and feed.positions.open(i) == feed.cursor for i in ids)
    pending = asyncio.ensure_future(anext(theirs))  # the other organisation's reader waits

    await attend(client, ed(auth), "2026-01-05T08:30:00Z")
    changed = await asyncio.wait_for(anext(mine), BOUND)
    assert changed.split("\n")[1:] == ["event: changed", "data: changed", "", ""]
    assert feed.positions.open(changed.split("\n")[0][4:]) == await newest(clean_ctx)
    for _ in range(5):
        await asyncio.sleep(0)  # her stream would have run by now, had it been woken with his
    assert not pending.done()  # nothing for her; her stream is still waiting
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    await theirs.aclose()
    await mine.aclose()
    assert feed._task is None and not feed.readers  # the poller stops with its last reader

    # a page that comes back with any position (Last-Event-ID) is told at once to catch up from its own
    again = live.stream(feed, hv, ids[0])
    await anext(again)
    assert (await anext(again)).split("\n")[1] == "event: changed"
    await again.aclose()


async def test_closing_the_feed_ends_every_stream_at_once(clean_ctx: AppContext) -> None:
    feed = feed_of(clean_ctx)
    streams = [live.stream(feed, HV, None), live.stream(feed, OTHER, "x" * TOKEN_LENGTH)]
    for s in streams:
        await anext(s)
        await anext(s)
    waiting = [asyncio.ensure_future(anext(s)) for s in streams]
    await asyncio.sleep(0)
    feed.close()
    for waiter in waiting:
        try:
            await asyncio.wait_for(waiter, BOUND)
            raise AssertionError("the stream went on")
        except StopAsyncIteration:
            pass
    assert not feed.readers and feed._task is None
    assert [c async for c in live.stream(feed, HV, None)] == []  # a closed feed opens no stream


async def test_an_outbox_id_committed_after_a_later_one_is_not_skipped(clean_ctx: AppContext) -> None:
    feed = feed_of(clean_ctx)
    feed.cursor = start = await newest(clean_ctx) + 1000

    async def outbox(number: int) -> None:
        async with clean_ctx.engine.begin() as conn:
            await conn.execute(insert(outbox_event).values(
                id=number, res_type="Task", res_id=f"t{number}", version_id=1, action="create",
                occurred_at=datetime(2026, 1, 5, 9, 0)))

    await outbox(start + 2)  # committed first, though its id was taken second
    assert [c.number for c in await feed.read()] == [start + 2]
    assert (feed.cursor, sorted(feed.gaps), feed.safe_position()) == (start + 2, [start + 1], start)
    await outbox(start + 1)
    assert [c.number for c in await feed.read()] == [start + 1]
    assert (feed.cursor, feed.gaps, feed.safe_position()) == (start + 2, {}, start + 2)


def test_a_position_is_sealed_differently_each_time_and_opens_only_with_its_key() -> None:
    keys = Positions.random()
    tokens = [keys.seal(41), keys.seal(41), keys.seal(42)]
    assert len(set(tokens)) == 3 and all(len(t) == TOKEN_LENGTH and "41" not in t for t in tokens[:2])
    assert [keys.open(t) for t in tokens] == [41, 41, 42]
    tampered = tokens[0][:-2] + ("AA" if tokens[0][-2:] != "AA" else "BB")
    assert [keys.open(v) for v in (tampered, "", None, "41", "é" * TOKEN_LENGTH, "=" * TOKEN_LENGTH)] == [None] * 6
    assert Positions.random().open(tokens[0]) is None  # another server's key
    assert [live.given_position(v) for v in (tokens[0], None, "12", "é" * TOKEN_LENGTH)] == [tokens[0], None, None, None]


async def test_the_stream_asks_the_policy_the_app_was_built_with(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await seed(client, clock.now().date())
    asked: list[tuple[str, str, str | None, str | None]] = []
    refuse = {"Task"}  # the substituted policy refuses to read these, though the real one allows it

    def policy(principal: Principal, interaction: str, resource_type: str | None, *args: Any, **kw: Any) -> Decision:
        content = args[0] if args else kw.get("resource")
        asked.append((interaction, resource_type or "", (content or {}).get("id"), principal.role))
        if interaction == "read" and resource_type in refuse:
            return Decision(False, 403, "refused by the substituted policy", "SF-0800", False, None)
        return decide(principal, interaction, resource_type, *args, **kw)

    ctx = dataclasses.replace(clean_ctx, policy=policy)
    async with _app_client(ctx, web_dev_sign_in=True) as http:
        page = await http.get("/app/sign-in")
        signed = await http.post("/app/dev-sign-in", data={"csrf_token": _csrf(page.text), "person": "hv"})
        assert (signed.status_code, (await http.get("/app")).status_code) == (303, 200)
        feed: live.LiveFeed = http._transport.app.state.web_live  # type: ignore[attr-defined]
    assert feed.policy is policy  # the feed the app made for its streams holds the injected policy
    feed.cursor = await newest(clean_ctx)
    await attend(client, ed(auth), "2026-01-05T08:30:00Z")  # her notice (Communication) and its Task
    changes = await feed.read()
    task = next(c for c in changes if c.res_type == "Task")
    comm = next(c for c in changes if c.res_type == "Communication")
    hv = await enriched(clean_ctx, HV)
    assert [live.concerns(decide, hv, c) for c in (task, comm)] == [True, True]  # the real policy: hers

    reader = live.Reader(hv)
    feed.readers.add(reader)
    asked.clear()
    feed.tell([task])
    assert (reader.woken.is_set(), asked) == (False, [("read", "Task", task.res_id, "health-visitor")])
    refuse.clear()  # the substitute now answers as the real policy does: the same change wakes her
    asked.clear()
    feed.tell([task])
    assert (reader.woken.is_set(), asked) == (True, [("read", "Task", task.res_id, "health-visitor")])
