"""Scale-out on one PostgreSQL, with real processes: two `safeflag serve --no-dispatcher` API processes
and two `safeflag dispatcher` processes against one database, the test's own receiving HTTP server, and
ED attendances posted to both API processes at once. Every notice reaches every subscriber exactly once,
in event-number order, and each subscription's event numbers run 1..N without a gap, whichever API
process took the attendance and whichever dispatcher matched and delivered it.

Bounded: a fixed number of attendances, every wait with its own limit; everything on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import _pg_url
from tests.e2e.server import start_server
from tests.notify.ed_data import by_nhs, encounter
from tests.notify.test_processes import CHILD_NHS, FAST, _stack, events_at, wait_until
from tests.support.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.pg]

ATTENDANCES = 200
CONCURRENCY = 8  # clients per API process
PATHS = ("/a", "/b", "/c")  # three subscribers, one receiver


@pytest.mark.pg
async def test_two_apis_and_two_dispatchers_deliver_each_notice_once_gap_free(pg_cluster: Any,
                                                                             receiver: Receiver) -> None:
    url = _pg_url(pg_cluster, f"scale_{uuid.uuid4().hex[:10]}")
    first = await _stack(url, receiver)  # API process 1 (migrates the database), with the organisations
    env = {**FAST, "SAFEFLAG_WEBHOOK_ALLOW": f"127.0.0.1:{receiver.port}",
           "SAFEFLAG_TEST_CLOCK": first.server.env["SAFEFLAG_TEST_CLOCK"]}  # one clock for every process
    second = await asyncio.to_thread(start_server, url, args=("--no-dispatcher",), extra_env=env)  # API process 2
    api2 = httpx.AsyncClient(base_url=second.base_url, headers=second.headers, timeout=30)
    try:
        for _ in range(2):  # nothing is killed here: a lease long enough never runs out mid-delivery
            first.start_dispatcher(SAFEFLAG_NOTIFY_LEASE_SECONDS="20")
        # The subscriber may wait up to 60 s for an answer: the receiver shares the test's event loop with
        # the load, and a bundle whose answer came too late is sent again (at-least-once, as it must be),
        # which would hide what this test looks for: the processes never sending one notice twice.
        sub_ids = [await first.subscribe(receiver, path, timeout_s=60) for path in PATHS]

        posted: dict[str, int] = {}

        async def post_all(api: httpx.AsyncClient, name: str, n: int) -> None:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one() -> None:
                async with gate:
                    resp = await api.post("/fhir/Encounter", json=encounter(by_nhs(CHILD_NHS), "Organization/ed"))
                    assert resp.status_code == 201, resp.text
                    posted[name] = posted.get(name, 0) + 1

            await asyncio.gather(*(one() for _ in range(n)))

        half = ATTENDANCES // 2
        await asyncio.gather(post_all(first.api, "api-1", half), post_all(api2, "api-2", ATTENDANCES - half))
        assert posted == {"api-1": half, "api-2": ATTENDANCES - half}

        await wait_until(lambda: all(len(events_at(receiver, p)) >= ATTENDANCES for p in PATHS), 120,
                         "every notice at every subscriber", first)
        await asyncio.sleep(0.5)  # a second copy, if any, would arrive now
        for path in PATHS:
            assert events_at(receiver, path) == list(range(1, ATTENDANCES + 1)), path  # once each, in order
        assert all(d.proc.poll() is None for d in first.dispatchers)

        # both API processes answer from the one database: every notice, every subscription's count
        for api in (first.api, api2):
            count = await api.get("/fhir/Communication", params={"_summary": "count"})
            assert count.json()["total"] == ATTENDANCES
            for sub_id in sub_ids:
                status = (await api.get(f"/fhir/Subscription/{sub_id}/$status")).json()
                params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
                assert params["events-since-subscription-start"]["valueString"] == str(ATTENDANCES)
    finally:
        await api2.aclose()
        second.stop()
        second.cleanup()
        await first.close()
