"""The 0-19 service's webhook endpoint in `safeflag demo`: a real HTTP server on a free 127.0.0.1 port
that records each notification with its arrival time and whether its `X-SafeFlag-Signature`
(HMAC-SHA256 of the exact body bytes) matches the subscription's secret.

Notification Bundles follow the R4 Subscriptions Backport
(https://hl7.org/fhir/uv/subscriptions-backport/notifications.html): the first entry is a
SubscriptionStatus Parameters whose `type` is handshake, heartbeat or event-notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from app.notify.channels.rest_hook import SIGNATURE_HEADER, sign


@dataclass(frozen=True)
class Delivery:
    at: float  # time.perf_counter() when the body had arrived
    bundle: dict[str, Any]
    signed: bool

    @property
    def type(self) -> str | None:
        params = self.bundle["entry"][0]["resource"].get("parameter", [])
        return next((p.get("valueCode") for p in params if p.get("name") == "type"), None)

    @property
    def focus(self) -> list[str]:
        """The `focus` references of its notification events, as sent (absolute URLs)."""
        params = self.bundle["entry"][0]["resource"].get("parameter", [])
        return [part["valueReference"]["reference"] for p in params if p.get("name") == "notification-event"
                for part in p.get("part", []) if part.get("name") == "focus"]


@dataclass
class Receiver:
    secret: str
    deliveries: list[Delivery] = field(default_factory=list)
    _sock: socket.socket | None = None
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        assert self._sock is not None
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        at = time.perf_counter()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        signed = hmac.compare_digest(headers.get(SIGNATURE_HEADER.lower(), ""), sign(self.secret, body))
        with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
            self.deliveries.append(Delivery(at, orjson.loads(body), signed))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def start(self) -> None:
        # bound here and handed over, so no other process can take the port in between
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        # log_config=None: leave the app's logging set-up alone
        config = uvicorn.Config(self, lifespan="off", log_config=None, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        await self.wait(lambda: self._server is not None and self._server.started, 10.0, "receiver start")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        if self._sock is not None:
            self._sock.close()

    async def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll until `predicate()` is truthy and return its value; TimeoutError naming `what`."""
        deadline = time.perf_counter() + timeout
        while not (found := predicate()):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no {what} within {timeout:.0f} s")
            await asyncio.sleep(0.005)
        return found
