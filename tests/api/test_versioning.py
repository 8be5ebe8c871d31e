"""Versioning on both databases (https://hl7.org/fhir/R4/http.html#concurrency, #versioning):
If-Match forms, 412 (also for the loser of a concurrent write, proved with two real PostgreSQL
transactions), 409 for a write over a stale read,
If-None-Match 304, update-as-create, no-change updates, revive after delete, idempotent delete,
vread of a deletion, history, and the types that are never deleted or never written."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.context import AppContext
from app.errors import Conflict
from tests.conftest import FHIR
from tests.support.fhir_data import create, instant, location, outcome, patient


@pytest.mark.parametrize("tag", ['W/"1"', '"1"', "1"])
async def test_if_match_forms(client: httpx.AsyncClient, tag: str) -> None:
    pid = await create(client, patient())
    r = await client.put(
        f"/fhir/Patient/{pid}", json={**patient(family="Jones"), "id": pid}, headers={"If-Match": tag}
    )
    assert (r.status_code, r.headers["etag"]) == (200, 'W/"2"')


async def test_if_match_mismatch_and_garbage(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    body = {**patient(family="Jones"), "id": pid}
    r = await client.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": 'W/"2"'})
    assert (r.status_code, r.json()) == (
        412,
        outcome(
            "conflict", f"SF-0413: If-Match version 2 does not match the current version 1 of Patient/{pid}"
        ),
    )
    r = await client.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": "W/abc"})
    assert (r.status_code, r.json()) == (
        400,
        outcome("invalid", "SF-0110: Invalid version 'W/abc' in If-Match", ["If-Match"]),
    )
    r = await client.put(
        "/fhir/Patient/new-one", json={**patient(), "id": "new-one"}, headers={"If-Match": "1"}
    )
    assert (r.status_code, r.json()) == (
        412,
        outcome("conflict", "SF-0413: Patient/new-one does not exist, so If-Match cannot match"),
    )
    r = await client.delete(f"/fhir/Patient/{pid}", headers={"If-Match": "5"})
    assert r.status_code == 412
    assert (await client.get(f"/fhir/Patient/{pid}")).json()["meta"]["versionId"] == "1"


async def test_stale_write_is_409_on_both_databases(clean_ctx: AppContext) -> None:
    """The repository writes only over the version it read (`WHERE version_id = n`)."""
    async with clean_ctx.unit_of_work() as svc:
        created = await svc.create("Patient", patient())
    stale = created.stored
    assert stale is not None
    async with clean_ctx.unit_of_work() as svc:
        await svc.repo.update(stale, {**patient(family="First"), "id": stale.id})
    with pytest.raises(Conflict) as caught:
        async with clean_ctx.unit_of_work() as svc:
            await svc.repo.update(stale, {**patient(family="Second"), "id": stale.id})
    assert caught.value.status == 409
    assert caught.value.outcome() == outcome(
        "conflict",
        f"SF-0409: Patient/{stale.id} was changed by a concurrent request; read it again and retry",
    )
    async with clean_ctx.unit_of_work() as svc:
        current = await svc.read("Patient", stale.id)
    assert (current.version_id, current.content["name"][0]["family"]) == (2, "First")


# PostgreSQL only: SQLite has one writer connection, so its writers are serialised and cannot interleave
@pytest.mark.pg
@pytest.mark.parametrize("ctx", ["pg"], indirect=True)
async def test_concurrent_update_waits_and_answers_412_on_postgresql(
    clean_ctx: AppContext, client: httpx.AsyncClient
) -> None:
    """Two transactions write v1 with If-Match 1: the second waits for the first's lock on the row,
    then reads v2 and answers 412, as SQLite (and a request sent after the first) does."""
    pid = await create(client, patient())
    async with clean_ctx.unit_of_work() as first:
        await first.update("Patient", pid, {**patient(family="First"), "id": pid}, if_match='W/"1"')
        second = asyncio.create_task(
            client.put(
                f"/fhir/Patient/{pid}",
                json={**patient(family="Second"), "id": pid},
                headers={"If-Match": 'W/"1"'},
            )
        )
        await asyncio.sleep(0.5)
        assert not second.done(), "the second write should wait for the first transaction's row lock"
    r = await second
    assert (r.status_code, r.json()) == (
        412,
        outcome("conflict", f"SF-0413: If-Match version 1 does not match the current version 2 of Patient/{pid}"),
    )
    stored = (await client.get(f"/fhir/Patient/{pid}")).json()
    assert (stored["meta"]["versionId"], stored["name"][0]["family"]) == ("2", "First")


# PostgreSQL only: SQLite has one writer connection, so its writers are serialised and cannot interleave
@pytest.mark.pg
@pytest.mark.parametrize("ctx", ["pg"], indirect=True)
async def test_concurrent_create_with_one_client_id_waits_and_updates_on_postgresql(
    clean_ctx: AppContext, client: httpx.AsyncClient
) -> None:
    """Update-as-create of one id by two transactions: the second waits for the first (a lock on the
    id), then finds the resource and updates it (200, version 2) instead of failing."""
    async with clean_ctx.unit_of_work() as first:
        await first.update("Patient", "twin", {**patient(), "id": "twin"})
        second = asyncio.create_task(
            client.put("/fhir/Patient/twin", json={**patient(family="B"), "id": "twin"})
        )
        await asyncio.sleep(0.5)
        assert not second.done()
    r = await second
    assert (r.status_code, r.json()["meta"]["versionId"], r.json()["name"][0]["family"]) == (200, "2", "B")


async def test_if_none_match_on_read_and_vread(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    for url in (f"/fhir/Patient/{pid}", f"/fhir/Patient/{pid}/_history/1"):
        for tag in ('W/"1"', "1", '"1"', '"3", W/"1"', "*"):
            r = await client.get(url, headers={"If-None-Match": tag})
            assert (r.status_code, r.content) == (304, b"")
            assert (r.headers["etag"], r.headers["last-modified"]) == (
                'W/"1"',
                "Mon, 05 Jan 2026 09:00:01 GMT",
            )
        r = await client.get(url, headers={"If-None-Match": 'W/"2"'})
        assert r.status_code == 200 and r.json()["id"] == pid


async def test_update_as_create_with_a_client_id(client: httpx.AsyncClient) -> None:
    r = await client.put("/fhir/Patient/child-1", json={**patient(), "id": "child-1"})
    assert r.status_code == 201
    assert r.headers["location"] == location("Patient", "child-1", 1)
    assert r.headers["etag"] == 'W/"1"'
    assert r.json()["meta"] == {"versionId": "1", "lastUpdated": instant(1)}
    history = (await client.get("/fhir/Patient/child-1/_history")).json()
    assert history["entry"][0]["request"] == {"method": "PUT", "url": "Patient/child-1"}
    assert history["entry"][0]["response"]["status"] == "201 Created"


async def test_an_update_equal_to_the_current_version_makes_no_version(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    stored = (await client.get(f"/fhir/Patient/{pid}")).json()
    for body in (
        {**patient(), "id": pid},
        stored,
        {**stored, "meta": {"versionId": "9", "lastUpdated": instant(9)}},
    ):
        r = await client.put(f"/fhir/Patient/{pid}", json=body)
        assert r.status_code == 200
        assert r.json() == stored
        assert (r.headers["etag"], r.headers["last-modified"]) == ('W/"1"', "Mon, 05 Jan 2026 09:00:01 GMT")
    labelled = {**patient(), "id": pid, "meta": {"tag": [{"system": "http://example.org/t", "code": "x"}]}}
    r = await client.put(f"/fhir/Patient/{pid}", json=labelled)
    assert r.json()["meta"]["versionId"] == "2"  # meta.tag is content: a change
    assert (await client.get(f"/fhir/Patient/{pid}/_history")).json()["total"] == 2


async def test_delete_is_idempotent_and_update_revives(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    first = await client.delete(f"/fhir/Patient/{pid}")  # tick 2
    second = await client.delete(f"/fhir/Patient/{pid}")
    for r in (first, second):
        assert (r.status_code, r.content, r.headers["etag"]) == (204, b"", 'W/"2"')
    gone = await client.get(f"/fhir/Patient/{pid}")
    assert (gone.status_code, gone.json(), gone.headers["etag"]) == (
        410,
        outcome("deleted", f"SF-0302: Patient/{pid} was deleted (version 2)"),
        'W/"2"',
    )
    revived = await client.put(f"/fhir/Patient/{pid}", json={**patient(family="Back"), "id": pid})  # tick 3
    assert revived.status_code == 201
    assert revived.headers["location"] == location("Patient", pid, 3)
    assert revived.json()["meta"] == {"versionId": "3", "lastUpdated": instant(3)}
    assert (await client.get(f"/fhir/Patient/{pid}")).json() == revived.json()
    unknown = await client.delete("/fhir/Patient/never-was")
    assert (unknown.status_code, unknown.json()) == (
        404,
        outcome("not-found", "SF-0301: Patient/never-was is not known", ["id"]),
    )


async def test_vread_of_a_deletion_and_history(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    await client.put(f"/fhir/Patient/{pid}", json={**patient(family="Jones"), "id": pid})  # tick 2
    await client.delete(f"/fhir/Patient/{pid}")  # tick 3
    await client.put(f"/fhir/Patient/{pid}", json={**patient(family="Back"), "id": pid})  # tick 4
    r = await client.get(f"/fhir/Patient/{pid}/_history/3")
    assert (r.status_code, r.json()) == (
        410,
        outcome("deleted", f"SF-0302: Version 3 of Patient/{pid} is a deletion"),
    )
    r = await client.get(f"/fhir/Patient/{pid}/_history/9")
    assert (r.status_code, r.json()) == (
        404,
        outcome("not-found", f"SF-0303: Version 9 of Patient/{pid} is not known"),
    )
    v2 = await client.get(f"/fhir/Patient/{pid}/_history/2")
    assert v2.json()["name"][0]["family"] == "Jones" and v2.headers["etag"] == 'W/"2"'
    history = (await client.get(f"/fhir/Patient/{pid}/_history")).json()
    url = f"{FHIR}/Patient/{pid}"
    assert [
        (e["fullUrl"], e["request"], e["response"], e.get("resource", {}).get("meta"))
        for e in history["entry"]
    ] == [
        (
            url,
            {"method": "PUT", "url": f"Patient/{pid}"},
            {"status": "200 OK", "etag": 'W/"4"', "lastModified": instant(4)},
            {"versionId": "4", "lastUpdated": instant(4)},
        ),
        (
            url,
            {"method": "DELETE", "url": f"Patient/{pid}"},
            {"status": "204 No Content", "etag": 'W/"3"', "lastModified": instant(3)},
            None,
        ),
        (
            url,
            {"method": "PUT", "url": f"Patient/{pid}"},
            {"status": "200 OK", "etag": 'W/"2"', "lastModified": instant(2)},
            {"versionId": "2", "lastUpdated": instant(2)},
        ),
        (
            url,
            {"method": "POST", "url": "Patient"},
            {"status": "201 Created", "etag": 'W/"1"', "lastModified": instant(1)},
            {"versionId": "1", "lastUpdated": instant(1)},
        ),
    ]


@pytest.mark.parametrize("rtype", ["Flag", "DocumentReference", "Binary", "AuditEvent"])
async def test_types_that_are_never_deleted(client: httpx.AsyncClient, rtype: str) -> None:
    for url in (f"/fhir/{rtype}/x1", f"/fhir/{rtype}?_id=x1"):
        r = await client.delete(url)
        assert (r.status_code, r.json()) == (
            405,
            outcome(
                "not-supported", f"SF-0405: {rtype} resources are never deleted; change their status instead"
            ),
        )


async def test_audit_events_are_never_written_through_the_api(client: httpx.AsyncClient) -> None:
    event = {"resourceType": "AuditEvent", "id": "a1"}
    r = await client.post("/fhir/AuditEvent", json=event)
    assert (r.status_code, r.json()) == (
        405,
        outcome(
            "not-supported",
            "SF-0406: AuditEvent is written by the server only; it cannot be created through the API",
        ),
    )
    r = await client.put("/fhir/AuditEvent/a1", json=event)
    assert (r.status_code, r.json()) == (
        405,
        outcome(
            "not-supported",
            "SF-0406: AuditEvent is written by the server only; it cannot be updated through the API",
        ),
    )
