"""The websocket channel is its Subscription creator's: only the creator (or admin) gets a binding token,
and what a bound socket receives is what the creator may read. A real SafeFlag app served by uvicorn on
127.0.0.1, a real dispatcher and a real websocket client (`websockets`); both databases."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
import websockets

from app.context import AppContext
from app.main import create_app
from app.notify.delivery import RetryPolicy
from app.notify.dispatcher import Dispatcher
from tests.conftest import FHIR, admin_token
from tests.notify.conftest import subscription
from tests.notify.owners import ELSEWHERE, SH_ORG, intruder, owner, sexual_health
from tests.support.fhir_data import flag, outcome, patient
from tests.support.postgres import free_port


class Served:
    def __init__(self, ctx: AppContext) -> None:
        self.app = create_app(ctx=ctx)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error",
                                                    lifespan="on", loop="asyncio", ws="websockets-sansio"))
        self.dispatcher = Dispatcher(ctx, ws=self.app.state.ws_registry,
                                     retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def served(notify_ctx: AppContext) -> AsyncIterator[Served]:
    s = Served(notify_ctx)
    task = asyncio.create_task(s.server.serve())
    for _ in range(500):
        if s.server.started:
            break
        await asyncio.sleep(0.01)
    assert s.server.started
    try:
        yield s
    finally:
        s.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await s.dispatcher.http.aclose()


async def _next(ws: Any) -> dict[str, Any]:
    return dict(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))


def _kind(bundle: dict[str, Any]) -> str:
    params = bundle["entry"][0]["resource"]["parameter"]
    return str(next(p["valueCode"] for p in params if p["name"] == "type"))


async def test_only_the_creator_binds_and_receives_what_it_may_read(served: Served, notify_ctx: AppContext) -> None:
    admin = {"Authorization": f"Bearer {admin_token(notify_ctx)}"}
    async with httpx.AsyncClient(base_url=served.base, headers=admin, timeout=30) as api:
        child = (await api.post("/fhir/Patient", json=patient("9990000018"))).json()["id"]
        mine = owner(notify_ctx)
        body = subscription("", topic="safeguarding-flag", channel="websocket", content="full-resource", secret=None,
                            filters=(f"Flag?patient=Patient/{child}",))
        r = await api.post("/fhir/Subscription", json=body, headers=mine)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        # another organisation's client: no binding token, by either form of the operation
        for kw in ({"url": f"/fhir/Subscription/{sid}/$get-ws-binding-token"},
                   {"url": "/fhir/Subscription/$get-ws-binding-token",
                    "json": {"resourceType": "Parameters", "parameter": [{"name": "id", "valueString": sid}]}}):
            r = await api.post(**kw, headers=intruder(notify_ctx))  # type: ignore[arg-type]
            assert (r.status_code, r.json()) == (404, outcome(
                "not-found", f"SF-0301: Subscription/{sid} is not known", ["id"]))
        # the creator binds
        r = await api.post(f"/fhir/Subscription/{sid}/$get-ws-binding-token", headers=mine)
        assert r.status_code == 200, r.text
        params = {p["name"]: p for p in r.json()["parameter"]}
        assert params["subscription"]["valueString"] == f"{FHIR}/Subscription/{sid}"
        async with websockets.connect(f"ws://127.0.0.1:{served.port}/fhir/ws") as ws:
            await ws.send(f"bind-with-token {params['token']['valueString']}")
            assert _kind(await _next(ws)) == "handshake"
            # a restricted Flag the creator may not read, then one it may
            r = await api.post("/fhir/Flag", json=flag(f"Patient/{child}", SH_ORG), headers=sexual_health(notify_ctx))
            assert r.status_code == 201, r.text
            seen = (await api.post("/fhir/Flag", json=flag(f"Patient/{child}", ELSEWHERE))).json()
            await served.dispatcher.run_once()
            got = await _next(ws)
            assert _kind(got) == "event-notification"
            assert [e.get("resource") for e in got["entry"][1:]] == [seen]
            status = {p["name"]: p for p in got["entry"][0]["resource"]["parameter"]}
            assert status["events-since-subscription-start"]["valueString"] == "1"
        # a binding token is good for one bind only
        async with websockets.connect(f"ws://127.0.0.1:{served.port}/fhir/ws") as ws:
            await ws.send(f"bind-with-token {params['token']['valueString']}")
            assert await _next(ws) == {"error": "unknown or expired token"}
