"""The notification benchmark's stage trace (app/notify/trace.py): off by default, it writes nothing;
with `notify_trace_dir` set, a dispatcher delivering to a real receiving HTTP server writes, for a
notice, the round that found it, its matching (with the outbox rows consumed), the lease, the events
loaded, the send and the recorded outcome, in that order, on the monotonic clock. Both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from app.context import AppContext
from app.notify import trace
from app.notify.delivery import RetryPolicy
from app.notify.dispatcher import Dispatcher
from tests.notify.conftest import notice, subscription
from tests.support.receiver import Receiver


@pytest.fixture
def traced(notify_ctx: AppContext, tmp_path: Path) -> Iterator[Path]:
    notify_ctx.settings.notify_trace_dir = str(tmp_path / "trace")
    try:
        yield tmp_path / "trace"
    finally:
        notify_ctx.settings.notify_trace_dir = ""
        trace.configure("")


def _marks(directory: Path) -> list[dict]:
    return [orjson.loads(line) for path in sorted(directory.glob("notify-*.jsonl"))
            for line in path.read_bytes().splitlines()]


async def test_each_stage_of_a_notice_is_traced_in_order(notify_ctx: AppContext, api: httpx.AsyncClient,
                                                         receiver: Receiver, traced: Path) -> None:
    d = Dispatcher(notify_ctx, retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2))
    try:
        resp = await api.post("/fhir/Subscription", json=subscription(receiver.url))
        sub_id = resp.json()["id"]
        await d.run_once()  # the handshake
        await receiver.wait_for(lambda: len(receiver.of_type("handshake")) == 1)
        comm = (await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))).json()["id"]
        before = len(_marks(traced))
        await d.run_once()
        await receiver.wait_for(lambda: receiver.events() == [1])
    finally:
        await d.close()
    marks = _marks(traced)[before:]
    assert [m["stage"] for m in marks] == ["matched", "leased", "loaded", "sent", "delivered"]
    assert ["Communication", comm] in marks[0]["rows"]
    assert marks[1]["subs"] == [sub_id]
    assert marks[2] == {"stage": "loaded", "t": marks[2]["t"], "sub": sub_id, "events": [[comm, ["Patient/p1"]]]}
    assert (marks[3]["sub"], marks[3]["numbers"], marks[3]["ok"]) == (sub_id, [1], True)
    assert (marks[4]["sub"], marks[4]["numbers"]) == (sub_id, [1])
    times = [m["t"] for m in marks]
    assert times == sorted(times)


async def test_no_trace_unless_asked(notify_ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver,
                                     tmp_path: Path) -> None:
    d = Dispatcher(notify_ctx, retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2))
    try:
        await api.post("/fhir/Subscription", json=subscription(receiver.url))
        await d.run_once()
        await receiver.wait_for(lambda: len(receiver.of_type("handshake")) == 1)
    finally:
        await d.close()
    assert not trace.on()
    assert list(tmp_path.iterdir()) == []
