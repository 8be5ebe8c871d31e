"""A real HTTP receiver for webhook tests: records every request, can answer 503 ("down"), stop
listening altogether and come back on the same port, or hold each request open until released
(`hold`: a subscriber that accepted the connection and never answers; once released, it answers
with the `status` in force then)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
import uvicorn


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    port: int = 0
    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    hold: asyncio.Event | None = None  # when given, every request is answered only once it is set
    open_requests: int = 0  # requests recorded and not yet answered

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return  # the sender went away mid-request (e.g. was killed): nothing was delivered
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        status = self.status
        if status < 300:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.received.append(Received(scope["path"], headers, body, time.time()))
            self.arrived.set()
        self.open_requests += 1
        try:
            if self.delay:  # a slow subscriber: the request is recorded, the answer comes later ("in flight")
                await asyncio.sleep(self.delay)
            if (held := self.hold) is not None:
                await held.wait()
                status = self.status  # a held request is answered with the status in force when released
        finally:
            self.open_requests -= 1
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="error", lifespan="on",
                                loop="asyncio", http="h11")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        self._server, self._task = None, None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def events(self) -> list[int]:
        """Every event number received, in arrival order (handshakes and heartbeats carry none)."""
        out = []
        for r in self.received:
            params = r.json["entry"][0]["resource"]["parameter"]
            for p in params:
                if p["name"] == "notification-event":
                    out.extend(int(part["valueString"]) for part in p["part"] if part["name"] == "event-number")
        return out

    def of_type(self, type_: str) -> list[Received]:
        out = []
        for r in self.received:
            params = r.json["entry"][0]["resource"]["parameter"]
            if any(p["name"] == "type" and p["valueCode"] == type_ for p in params):
                out.append(r)
        return out

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: condition not met within {timeout}s; got {len(self.received)} requests")
            await asyncio.sleep(0.02)
