"""`safeflag serve --workers 2` on both databases, with real processes: each worker is a fork of the
`safeflag serve` process (app/prefork.py), which imported the app once, and not a fresh interpreter
that imports everything again. Each forked worker runs its own dispatcher with its own database and
LISTEN connections: every ED attendance reaches the test's receiving HTTP server once, in
event-number order, whichever worker took it; SIGTERM stops the server and both workers with exit 0.

Bounded: a fixed number of attendances, every wait with its own limit; everything on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.e2e.crash import database  # noqa: F401  (fixture: SQLite and PostgreSQL)
from tests.e2e.server import start_server
from tests.notify.ed_data import by_nhs, encounter, organization
from tests.notify.test_processes import CHILD_NHS, FAST, Stack, events_at, wait_until
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e

ATTENDANCES = 30


def _children(pid: int) -> list[int]:
    return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


async def test_two_forked_workers_serve_and_deliver_every_notice_once(database: str | None,
                                                                      receiver: Receiver) -> None:
    env = {**FAST, "SAFEFLAG_WEBHOOK_ALLOW": f"127.0.0.1:{receiver.port}"}
    server = await asyncio.to_thread(start_server, database, args=("--workers", "2"), extra_env=env)
    stack = Stack(server)
    try:
        # forks run the parent's command line; a spawned worker would run `-c from multiprocessing.spawn ...`
        workers = _children(server.proc.pid)
        assert len(workers) == 2
        assert [_cmdline(pid) for pid in workers] == [_cmdline(server.proc.pid)] * 2

        for rid, org in (("ed", organization("City ED", "emergency-department")),
                         ("duty", organization("0-19 duty desk", "zero-to-nineteen-duty"))):
            resp = await stack.api.put(f"/fhir/Organization/{rid}", json={**org, "id": rid})
            assert resp.status_code == 201, resp.text
        sub_id = await stack.subscribe(receiver, max_count=5)
        # several connections, so that both workers take attendances
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=30,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as api:
            for _ in range(ATTENDANCES):
                resp = await api.post("/fhir/Encounter", json=encounter(by_nhs(CHILD_NHS), "Organization/ed"))
                assert resp.status_code == 201, resp.text
        await wait_until(lambda: len(events_at(receiver)) >= ATTENDANCES, 60, "every notice", stack)
        await asyncio.sleep(0.3)  # a second copy, if any, would arrive now
        assert events_at(receiver) == list(range(1, ATTENDANCES + 1))
        status = (await stack.api.get(f"/fhir/Subscription/{sub_id}/$status")).json()
        params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
        assert params["events-since-subscription-start"]["valueString"] == str(ATTENDANCES)
        assert _children(server.proc.pid) == workers  # neither worker died and was replaced
    finally:
        await stack.api.aclose()
        code = server.stop()
        server.cleanup()
    assert code == 0
