"""The dispatcher's own write of a Subscription's status (after a handshake, or when delivery keeps
failing) and a client's PUT of the same Subscription at the same moment: the status write waits for
the client's transaction (a row lock, as the API's writes take) and applies on top of what the client
wrote. Neither is lost and neither fails with a 409 (SF-0409) or a 500.

PostgreSQL only: SQLite has one writer connection, so its writers are serialised and cannot interleave."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.context import AppContext
from app.notify.delivery import set_status
from tests.notify.conftest import subscription
from tests.support.pg_locks import hold_row, lock_waiters

HOOK = "http://127.0.0.1/hook"  # nothing is delivered in this test
@pytest.mark.pg
@pytest.mark.parametrize("ctx", ["pg"], indirect=True)
async def test_the_dispatchers_status_write_waits_for_a_client_put_and_keeps_it(
    clean_ctx: AppContext, client: httpx.AsyncClient
) -> None:
    r = await client.post("/fhir/Subscription", json=subscription(HOOK))
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    changed = {**subscription(HOOK), "id": sid, "reason": "changed by the client"}
    # Both writers queue behind a transaction holding the row, the client's PUT first.
    async with clean_ctx.engine.connect() as blocker:
        await hold_row(blocker, "Subscription", sid)
        put = asyncio.create_task(client.put(f"/fhir/Subscription/{sid}", json=changed))
        await lock_waiters(clean_ctx, 1)
        status = asyncio.create_task(set_status(clean_ctx, sid, "error", "handshake failed: refused"))
        await lock_waiters(clean_ctx, 2)
        await blocker.rollback()
    r = await put
    assert (r.status_code, r.json()["meta"]["versionId"], r.json()["reason"]) == (200, "2", "changed by the client")
    await status  # no Conflict (SF-0409): it read the client's version under the lock
    stored = (await client.get(f"/fhir/Subscription/{sid}")).json()
    assert (stored["meta"]["versionId"], stored["reason"], stored["status"], stored["error"]) == (
        "3", "changed by the client", "error", "handshake failed: refused")
    found = (await client.get(f"/fhir/Subscription/{sid}/$status")).json()
    statuses = [p for e in found["entry"] for p in e["resource"].get("parameter", []) if p["name"] == "status"]
    assert [p["valueCode"] for p in statuses] == ["error"]
