"""Every time a client is shown comes from the app's injected clock (app/clock.py), never the machine's:
with the clock held at a fixed instant far from today, each Bundle's `meta.lastUpdated` (search,
history, a conformance search, the referral QA queue), the `$events` notification Bundle's timestamp,
the websocket handshake Bundle's timestamp, a binding token's expiration and the CapabilityStatement's
date all read that instant. A real app served by uvicorn on 127.0.0.1 and a real websocket client;
both databases."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
import websockets

from app.context import AppContext
from app.main import create_app
from tests.conftest import admin_token
from tests.notify.conftest import subscription
from tests.notify.owners import owner
from tests.support.postgres import free_port

AT = datetime(2031, 7, 15, 8, 30, 0, tzinfo=UTC)  # a Tuesday years away: no test runs then
INSTANT = "2031-07-15T08:30:00.000+00:00"


class HeldClock:
    """A clock held at one instant."""

    def now(self) -> datetime:
        return AT


@pytest.fixture
async def held(notify_ctx: AppContext) -> AsyncIterator[tuple[AppContext, str]]:
    ctx = dataclasses.replace(notify_ctx, clock=HeldClock())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ctx=ctx), host="127.0.0.1", port=port, log_level="error",
                                           lifespan="on", loop="asyncio", ws="websockets-sansio"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield ctx, f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def test_client_visible_times_follow_the_injected_clock(held: tuple[AppContext, str]) -> None:
    ctx, host = held
    admin = {"Authorization": f"Bearer {admin_token(ctx)}"}
    async with httpx.AsyncClient(base_url=f"http://{host}", headers=admin, timeout=30) as api:
        assert (await api.get("/fhir/metadata")).json()["date"] == "2031-07-15T08:30:00+00:00"
        for path in ("/fhir/Patient", "/fhir/Patient/_history", "/fhir/_history", "/fhir/ValueSet",
                     "/fhir/DocumentReference/$qa-queue"):
            r = await api.get(path)
            assert (r.status_code, r.json()["meta"]["lastUpdated"]) == (200, INSTANT), path
        body = subscription("", topic="safeguarding-flag", channel="websocket", content="id-only", secret=None)
        r = await api.post("/fhir/Subscription", json=body, headers=owner(ctx))
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        r = await api.get(f"/fhir/Subscription/{sid}/$events", headers=owner(ctx))
        assert (r.status_code, _timestamp(r.json())) == (200, INSTANT)
        r = await api.post(f"/fhir/Subscription/{sid}/$get-ws-binding-token", headers=owner(ctx))
        params = {p["name"]: p for p in r.json()["parameter"]}
        assert params["expiration"]["valueDateTime"] == "2031-07-15T08:31:00.000+00:00"  # the token lives 60 s
        async with websockets.connect(f"ws://{host}/fhir/ws") as ws:
            await ws.send(f"bind-with-token {params['token']['valueString']}")
            handshake = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert _timestamp(handshake) == INSTANT


def _timestamp(bundle: dict[str, Any]) -> str:
    """A notification Bundle's time: its `timestamp` (Backport IG)."""
    return str(bundle["timestamp"])
