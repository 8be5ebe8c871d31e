"""Delivery reliability with real processes (contract section 6; issue 5 "Reliability"): a real
`safeflag serve --no-dispatcher`, one or two real `safeflag dispatcher` processes on the same database,
and the test's own receiving HTTP server.

- kill -9 the dispatcher in the middle of a burst, restart it: every event arrives, event numbers are
  1..N without gaps, and the only duplicates are the deliveries that were in flight (SQLite, PostgreSQL);
- the receiver answers 503, then is gone altogether, then is back: everything arrives, in order, and
  `$events` replays any range (SQLite, PostgreSQL);
- two dispatcher processes on one PostgreSQL: each event number reaches each subscriber exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _pg_url
from tests.e2e.crash import database
from tests.e2e.server import RunningServer, safeflag_command, start_server
from tests.notify.conftest import BACKPORT, subscription
from tests.notify.ed_data import by_nhs, encounter, organization
from tests.support.receiver import Receiver

__all__ = ["database"]  # fixture

pytestmark = pytest.mark.e2e

FAST = {
    "SAFEFLAG_NOTIFY_POLL_SECONDS": "0.05",
    "SAFEFLAG_NOTIFY_LEASE_SECONDS": "2",
    "SAFEFLAG_NOTIFY_BACKOFF_BASE": "0.05",
    "SAFEFLAG_NOTIFY_BACKOFF_CAP": "0.5",
    "SAFEFLAG_LOG_LEVEL": "WARNING",
}
CHILD_NHS = "9990000018"  # not on file: every notice goes to the duty team


@dataclass
class DispatcherProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Stack:
    """One API process and its dispatcher processes, all on one database."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.dispatchers: list[DispatcherProcess] = []
        self.api = httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=30)

    def start_dispatcher(self, **env: str) -> DispatcherProcess:
        log = self.server.workdir / f"dispatcher-{len(self.dispatchers)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*safeflag_command(), "dispatcher", "--no-migrate"], env={**self.server.env, **env},
                                    cwd=self.server.workdir, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        d = DispatcherProcess(proc, log)
        self.dispatchers.append(d)
        return d

    async def close(self) -> None:
        await self.api.aclose()
        for d in self.dispatchers:
            d.stop()
        self.server.stop()
        self.server.cleanup()

    def logs(self) -> str:
        errors = [line for line in self.server.stderr_lines() if '"ERROR"' in line][-5:]
        return "\n".join([*(d.log.read_text()[-3000:] for d in self.dispatchers), *errors])

    async def subscribe(self, receiver: Receiver, path: str = "", max_count: int = 10, timeout_s: int = 2) -> str:
        sub = subscription(receiver.url + path)
        sub["channel"]["extension"] = [
            {"url": BACKPORT + "backport-max-count", "valuePositiveInt": max_count},
            {"url": BACKPORT + "backport-timeout", "valueUnsignedInt": timeout_s},
        ]
        resp = await self.api.post("/fhir/Subscription", json=sub)
        assert resp.status_code == 201, resp.text
        sub_id: str = resp.json()["id"]
        await wait_until(lambda: any(r.path == "/hook" + path for r in receiver.of_type("handshake")), 30,
                         f"handshake for {path or '/hook'}", self)
        return sub_id

    async def burst(self, n: int, concurrency: int = 8) -> None:
        """`n` ED attendances as fast as `concurrency` clients can post them; one notice each."""
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                resp = await self.api.post("/fhir/Encounter", json=encounter(by_nhs(CHILD_NHS), "Organization/ed"))
                assert resp.status_code == 201, resp.text

        await asyncio.gather(*(one() for _ in range(n)))

    async def count_notices(self) -> int:
        resp = await self.api.get("/fhir/Communication", params={"_summary": "count"})
        total: int = resp.json()["total"]
        return total


async def wait_until(predicate: Any, timeout: float, what: str, stack: Stack | None = None) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{stack.logs() if stack else ''}")
        await asyncio.sleep(0.05)


def events_at(receiver: Receiver, path: str = "") -> list[int]:
    """Event numbers received on one subscriber path, in arrival order (duplicates kept)."""
    out: list[int] = []
    for r in receiver.received:
        if r.path != "/hook" + path:
            continue
        for p in r.json["entry"][0]["resource"]["parameter"]:
            if p["name"] == "notification-event":
                out += [int(part["valueString"]) for part in p["part"] if part["name"] == "event-number"]
    return out


async def _stack(database_url: str | None, receiver: Receiver) -> Stack:
    """A server whose allow-list names the receiver's exact port."""
    env = {**FAST, "SAFEFLAG_WEBHOOK_ALLOW": f"127.0.0.1:{receiver.port}"}
    server = await asyncio.to_thread(start_server, database_url, args=("--no-dispatcher",), extra_env=env)
    stack = Stack(server)
    try:
        for rid, org in (("ed", organization("City ED", "emergency-department")),
                         ("duty", organization("0-19 duty desk", "zero-to-nineteen-duty"))):
            resp = await stack.api.put(f"/fhir/Organization/{rid}", json={**org, "id": rid})
            assert resp.status_code == 201, resp.text
    except BaseException:
        await stack.close()  # never leave a server process behind
        raise
    return stack


@pytest.fixture
async def stack(database: str | None, receiver: Receiver) -> AsyncIterator[Stack]:
    s = await _stack(database, receiver)
    try:
        yield s
    finally:
        await s.close()


async def test_kill9_mid_burst_loses_nothing(stack: Stack, receiver: Receiver) -> None:
    n, max_count = 150, 10
    first = stack.start_dispatcher()
    sub_id = await stack.subscribe(receiver, max_count=max_count)
    receiver.delay = 0.15  # each delivery stays in flight a while: the kill lands inside one
    burst = asyncio.create_task(stack.burst(n))
    await wait_until(lambda: len(events_at(receiver)) >= 3 * max_count, 60, "the first deliveries", stack)
    first.kill9()  # while attendances are still being posted and a delivery is in flight
    before_kill = events_at(receiver)
    await burst
    assert len(set(before_kill)) < n, "the burst was delivered before the kill; nothing was tested"
    receiver.delay = 0.0
    stack.start_dispatcher()
    await wait_until(lambda: set(events_at(receiver)) >= set(range(1, n + 1)), 60, "every event after restart", stack)
    got = events_at(receiver)
    assert sorted(set(got)) == list(range(1, n + 1))  # none lost, gap-free
    assert await stack.count_notices() == n
    status = (await stack.api.get(f"/fhir/Subscription/{sub_id}/$status")).json()
    assert status.get("type") == "searchset", stack.logs()
    params = status["entry"][0]["resource"]["parameter"]
    since_start = {p["name"]: p for p in params}["events-since-subscription-start"]["valueString"]
    assert since_start == str(n)
    duplicates = {num for num, c in Counter(got).items() if c > 1}
    print(f"kill -9 after {len(before_kill)} events; in-flight resent: {sorted(duplicates)}")
    # at-least-once: only what was in flight at the kill (one bundle at most) comes again, once
    assert duplicates <= set(before_kill)
    assert len(duplicates) <= max_count and max(Counter(got).values()) <= 2
    # apart from the in-flight resend, arrival order is event order
    after = got[len(before_kill):]
    assert [x for x in after if x not in duplicates] == sorted(set(range(1, n + 1)) - set(before_kill))


async def test_receiver_down_then_back(stack: Stack, receiver: Receiver) -> None:
    stack.start_dispatcher()
    sub_id = await stack.subscribe(receiver)
    receiver.status = 503
    await stack.burst(10)
    await asyncio.sleep(1.0)  # several failed attempts with backoff
    assert events_at(receiver) == []
    await receiver.stop()  # gone altogether: connection refused
    await stack.burst(10)
    await asyncio.sleep(1.0)
    receiver.status = 200
    await receiver.start()  # back on the same port
    await wait_until(lambda: len(events_at(receiver)) >= 20, 30, "delivery after recovery", stack)
    await asyncio.sleep(0.3)
    assert events_at(receiver) == list(range(1, 21))  # each once, in order
    status = (await stack.api.get(f"/fhir/Subscription/{sub_id}")).json()["status"]
    assert status == "active"

    async def replay(**params: str) -> list[int]:
        resp = await stack.api.get(f"/fhir/Subscription/{sub_id}/$events", params=params)
        assert resp.status_code == 200, resp.text
        return [int(part["valueString"]) for p in resp.json()["entry"][0]["resource"]["parameter"]
                if p["name"] == "notification-event" for part in p["part"] if part["name"] == "event-number"]

    assert await replay() == list(range(1, 21))
    assert await replay(eventsSinceNumber="5", eventsUntilNumber="12") == list(range(5, 13))
    assert await replay(eventsSinceNumber="18") == [18, 19, 20]
    assert await replay(eventsUntilNumber="2") == [1, 2]
    assert await replay(eventsSinceNumber="21") == []


@pytest.mark.pg
async def test_two_dispatchers_deliver_each_event_once(pg_cluster: Any, receiver: Receiver) -> None:
    stack = await _stack(_pg_url(pg_cluster, f"proc_{uuid.uuid4().hex[:10]}"), receiver)
    try:
        # a longer lease: nothing is killed here, so no lease may run out while a delivery is in flight
        for _ in range(2):
            stack.start_dispatcher(SAFEFLAG_NOTIFY_LEASE_SECONDS="20")
        paths = ["/a", "/b", "/c"]
        for path in paths:
            await stack.subscribe(receiver, path)
        n = 120
        await stack.burst(n)
        await wait_until(lambda: all(len(events_at(receiver, p)) >= n for p in paths), 60, "every event", stack)
        await asyncio.sleep(0.5)  # a second copy, if any, would arrive now
        for path in paths:
            assert events_at(receiver, path) == list(range(1, n + 1)), path
        assert all(d.proc.poll() is None for d in stack.dispatchers)
    finally:
        await stack.close()
