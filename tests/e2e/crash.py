"""Shared parts of the tests that kill a real server process: the database fixture (SQLite in the
server's data directory, or a fresh PostgreSQL database), a `safeflag serve` on it, the ED set-up
with a subscribed receiver, and what the receiver got for which attendance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import _pg_url
from tests.e2e.server import RunningServer, start_server
from tests.notify.conftest import subscription
from tests.notify.ed_data import by_nhs, encounter, organization
from tests.support.postgres import free_port
from tests.support.receiver import Receiver

CHILD_NHS = "9990000018"  # not on file: the notice goes to the 0-19 duty team


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        yield _pg_url(request.getfixturevalue("pg_cluster"), f"proc_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def hook_port() -> int:
    """The receiver's port, which the server's allow-list names exactly."""
    return free_port()


@pytest.fixture
async def server(database: str | None, hook_port: int) -> AsyncIterator[RunningServer]:
    srv = await asyncio.to_thread(start_server, database, extra_env={
        "SAFEFLAG_LOG_LEVEL": "WARNING", "SAFEFLAG_WEBHOOK_ALLOW": f"127.0.0.1:{hook_port}"})
    try:
        yield srv
    finally:
        srv.cleanup()


async def setup_attendances(api: httpx.AsyncClient, receiver: Receiver) -> str:
    """The ED and the duty team, and `receiver` subscribed to ed-attendance (handshake done)."""
    for rid, org in (("ed", organization("City ED", "emergency-department")),
                     ("duty", organization("0-19 duty desk", "zero-to-nineteen-duty"))):
        resp = await api.put(f"/fhir/Organization/{rid}", json={**org, "id": rid})
        assert resp.status_code == 201, resp.text
    resp = await api.post("/fhir/Subscription", json=subscription(receiver.url))
    assert resp.status_code == 201, resp.text
    await receiver.wait_for(lambda: len(receiver.of_type("handshake")) == 1, timeout=30)
    return str(resp.json()["id"])


async def attend(api: httpx.AsyncClient) -> str:
    resp = await api.post("/fhir/Encounter", json=encounter(by_nhs(CHILD_NHS), "Organization/ed"))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def taken_back(server: RunningServer) -> list[dict[str, Any]]:
    return [r for r in server.log_records() if r.get("msg") == "took back the delivery leases of dispatchers that are gone"]


def encounters_notified(receiver: Receiver) -> dict[str, list[int]]:
    """Encounter id -> event numbers of the notifications that named it."""
    out: dict[str, list[int]] = {}
    for r in receiver.of_type("event-notification"):
        for p in r.json["entry"][0]["resource"]["parameter"]:
            if p["name"] != "notification-event":
                continue
            number = next(int(x["valueString"]) for x in p["part"] if x["name"] == "event-number")
            for x in p["part"]:
                ref = (x.get("valueReference") or {}).get("reference", "")
                if x["name"] == "additional-context" and "/Encounter/" in ref:
                    out.setdefault(ref.rsplit("/", 1)[1], []).append(number)
    return out
