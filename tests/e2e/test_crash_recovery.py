"""A real `safeflag serve` (in-process dispatcher, default lease of 30 s) killed with SIGKILL while it
delivers a notification, then started again: on both databases,

- the new process takes the dead one's delivery lease back as it starts (the log line saying so names
  the dead owner), instead of waiting out the 30 s lease plus the channel timeout;
- the notification that was in flight is sent again (at-least-once, same event number) and an
  attendance acknowledged after the restart is delivered next, both well before the old lease ends.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.e2e.crash import (
    attend,
    database,
    encounters_notified,
    hook_port,
    server,
    setup_attendances,
    taken_back,
)
from tests.e2e.server import RunningServer
from tests.support.receiver import Receiver

__all__ = ["database", "hook_port", "server"]  # fixtures

pytestmark = pytest.mark.e2e

# Far below the dead process's lease (30 s, plus the 10 s channel timeout it was renewed with):
# reaching it means the lease was waited out, not taken back.
WELL_BEFORE_THE_LEASE_ENDS_S = 10.0


async def test_kill9_mid_delivery_restart_takes_the_lease_back_at_once(server: RunningServer,
                                                                       hook_port: int) -> None:
    async with Receiver(port=hook_port) as receiver, httpx.AsyncClient(base_url=server.base_url, headers=server.headers,
                                                         timeout=30) as api:
        await setup_attendances(api, receiver)
        receiver.hold = asyncio.Event()  # the subscriber takes the notification and does not answer
        first = await attend(api)
        await receiver.wait_for(lambda: receiver.open_requests == 1, timeout=30)
        killed = server.proc.pid
        server.kill9()  # mid-delivery: the lease is written, the delivery unfinished
        receiver.hold.set()
        receiver.hold = None
        assert encounters_notified(receiver) == {first: [1]}

        await asyncio.to_thread(server.restart)
        ready = time.monotonic()
        await receiver.wait_for(lambda: encounters_notified(receiver).get(first) == [1, 1],
                                timeout=WELL_BEFORE_THE_LEASE_ENDS_S)
        resent_s = time.monotonic() - ready
        posted = time.time()
        second = await attend(api)
        answered = time.time()
        await receiver.wait_for(lambda: encounters_notified(receiver).get(second) == [2],
                                timeout=WELL_BEFORE_THE_LEASE_ENDS_S)
        arrived = next(r.at for r in receiver.of_type("event-notification") if second in r.body.decode())
        print(f"{server.database}: the in-flight notice resent {resent_s * 1000:.0f} ms after the restarted "
              f"server was ready; the next attendance answered in {(answered - posted) * 1000:.0f} ms, "
              f"notified {(arrived - posted) * 1000:.0f} ms after its POST")
        records = taken_back(server)
        assert len(records) == 1, json.dumps(server.log_records()[-5:])
        assert records[0]["level"] == "WARNING"
        (dead,) = records[0]["owners"]  # the killed process, by its lock kind and pid
        assert dead.split(":")[0] == ("file" if server.database == "SQLite" else "pg")
        assert dead.endswith(f":{killed}")
