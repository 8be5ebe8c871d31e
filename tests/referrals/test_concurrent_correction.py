"""A correction that replaces a referral copy while a client marks that copy entered-in-error: the
correction reads the copy locked, so it waits for the client's write and then refuses to replace a
copy that is no longer current (422 SF-0919), instead of failing with a 409 (SF-0409) when the server
marks the copy superseded.

PostgreSQL only: SQLite has one writer connection, so its writers are serialised and cannot interleave."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.context import AppContext
from tests.referrals.support import World, copy, created, oo, reason
from tests.support.pg_locks import hold_row, lock_waiters


@pytest.mark.pg
@pytest.mark.parametrize("ctx", ["pg"], indirect=True)
async def test_a_correction_waits_for_a_client_ending_the_copy_and_refuses_it(
    clean_ctx: AppContext, client: httpx.AsyncClient
) -> None:
    w = await World.make(client)
    old = await created(client, copy(w.child))
    stored = (await client.get(f"/fhir/{old}")).json()
    ended = {**stored, "status": "entered-in-error", "extension": [*stored.get("extension", []), reason()]}
    fixed = {**copy(w.child), "relatesTo": [{"code": "replaces", "target": {"reference": old}}]}
    async with clean_ctx.engine.connect() as blocker:  # both writers queue behind it, the client's PUT first
        await hold_row(blocker, "DocumentReference", old.partition("/")[2])
        put = asyncio.create_task(client.put(f"/fhir/{old}", json=ended))
        await lock_waiters(clean_ctx, 1)
        correction = asyncio.create_task(client.post("/fhir/DocumentReference", json=fixed))
        await lock_waiters(clean_ctx, 2)
        await blocker.rollback()
    r = await put
    assert (r.status_code, r.json()["meta"]["versionId"], r.json()["status"]) == (200, "2", "entered-in-error")
    r = await correction
    assert (r.status_code, r.json()) == (422, oo(
        "business-rule", f"SF-0919: {old} is entered-in-error and cannot be replaced; only a current copy can",
        ["DocumentReference.relatesTo[0].target"]))
    current = (await client.get(f"/fhir/{old}")).json()
    assert (current["meta"]["versionId"], current["status"]) == ("2", "entered-in-error")
