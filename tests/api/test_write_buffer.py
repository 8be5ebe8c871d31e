"""Deferred version, index and outbox rows (app/storage/buffer.py) on both databases: what a create
writes and in how many statements, reads in the same transaction seeing queued rows once flushed, create-then-update
in one transaction, savepoints that fail or succeed, and rollback dropping the queue."""

from __future__ import annotations

import asyncio
import copy
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, insert, select

from app.context import AppContext
from app.security.principal import Principal
from app.security.scopes import ScopeSet
from app.storage import buffer
from app.storage.audit_tables import audit_event
from app.storage.buffer import PENDING
from app.storage.tables import idx_token, resource, resource_version
from tests.support.fhir_data import flag, organization, patient

NHS = "https://fhir.nhs.uk/Id/nhs-number"
AUDITED = Principal(sub="buffer-admin", role="admin", scopes=ScopeSet.parse("user/*.cruds"),
                    issuer="http://127.0.0.1:8080/auth", org="Organization/buffer")


def _statements() -> tuple[list[str], Any]:
    seen: list[str] = []

    def record(_conn: Any, _cur: Any, sql: str, *_a: Any) -> None:
        seen.append(" ".join(sql.split()))

    return seen, record


async def _count(ctx: AppContext, table: Any, **where: Any) -> int:
    async with ctx.sessionmaker() as session:
        stmt = select(func.count()).select_from(table).where(*(table.c[k] == v for k, v in where.items()))
        return int((await session.execute(stmt)).scalar_one())


async def test_create_writes_queued_rows_in_one_statement_per_table(clean_ctx: AppContext) -> None:
    # what the database was asked to run: on PostgreSQL as SQLAlchemy sends it, on SQLite as sqlite3
    # runs it (queued rows go straight to the sqlite3 connection; an executemany traces once per row)
    sent, record = _statements()
    traced: list[str] = []
    sqlite = clean_ctx.engine.dialect.name == "sqlite"
    event.listen(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with clean_ctx.unit_of_work() as svc:
            raw = (await svc.session.connection()).sync_connection.connection.driver_connection  # type: ignore[union-attr]
            if sqlite:
                raw.sqlite.set_trace_callback(lambda sql: traced.append(" ".join(sql.split())))
            first = await svc.create("Patient", patient(nhs="9990000018"))
            second = await svc.create("Patient", patient(nhs="9990000026"))
            await svc.repo.flush()
            if sqlite:
                raw.sqlite.set_trace_callback(None)
    finally:
        event.remove(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    writes = [s for s in (traced if sqlite else sent) if s.startswith(("INSERT", "WITH"))]
    # each Patient's resource row and its NHS number at once (the key is needed; the number's
    # uniqueness must answer inside the write), then each queued table once for both
    at_once = ["INSERT INTO resource", "INSERT INTO patient_nhs_number"] * 2
    if sqlite:  # SQLAlchemy sent only those: the queued ones went straight to sqlite3
        assert [s.split(" (")[0] for s in sent if s.startswith("INSERT")] == at_once
    # on SQLite one executemany per queued table, on PostgreSQL all of them in one statement
    queued = ["resource_version", "idx_token", "idx_string", "idx_date", "outbox_event"]
    if sqlite:
        tables = [w.split(" (")[0] for w in writes]
        assert [t for i, t in enumerate(tables) if i == 0 or t != tables[i - 1]] == (
            at_once + [f"INSERT INTO {t}" for t in queued]
        )
        assert tables.count("INSERT INTO resource") == 2 and tables.count("INSERT INTO outbox_event") == 2
    else:
        assert [w.split(" (")[0] for w in writes[:4]] == at_once
        assert len(writes) == 5 and writes[4].startswith("WITH w0 AS (INSERT INTO resource_version ")
        assert re.findall(r"INSERT INTO (\w+)", writes[4]) == queued
    for outcome in (first, second):
        rid = outcome.stored.id
        assert await _count(clean_ctx, resource_version, res_type="Patient", res_id=rid) == 1
    assert await _count(clean_ctx, idx_token, res_type="Patient", param="identifier", code="9990000026") == 1


async def test_a_read_in_the_transaction_sees_queued_index_rows(clean_ctx: AppContext) -> None:
    async with clean_ctx.unit_of_work() as svc:
        created = await svc.create("Patient", patient(nhs="9990000034"))
        assert svc.session.info[PENDING]  # queued, not yet written
        _, found = await svc.search_result("Patient", [("identifier", f"{NHS}|9990000034")])
        assert [m.id for m in found.matches] == [created.stored.id]
        assert PENDING not in svc.session.info


async def test_a_search_leaves_the_audit_records_of_earlier_reads_queued_until_commit(clean_ctx: AppContext) -> None:
    """A page reads, then searches, then searches again: its audit records (the trail's rows, which no
    search reads) stay queued and go out once, before COMMIT, not one INSERT before each search."""
    async with clean_ctx.unit_of_work() as svc:
        pid = (await svc.create("Patient", patient(nhs="9990000034"))).stored.id
    sent, record = _statements()  # as SQLAlchemy sends them, and on SQLite as sqlite3 runs them (queued rows)
    event.listen(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with clean_ctx.unit_of_work(principal=AUDITED) as svc:
            raw = (await svc.session.connection()).sync_connection.connection.driver_connection  # type: ignore[union-attr]
            if clean_ctx.engine.dialect.name == "sqlite":
                raw.sqlite.set_trace_callback(sent.append)
            await svc.read("Patient", pid)
            for _ in range(2):
                _, found = await svc.search_result("Patient", [("identifier", f"{NHS}|9990000034")])
                assert [m.id for m in found.matches] == [pid]
                assert {stmt.table.name for stmt in svc.session.info[PENDING]} == {"audit_event", "audit_event_ref"}
            assert not [s for s in sent if "INSERT INTO audit_event" in s]  # nothing of the trail written yet
            if clean_ctx.engine.dialect.name == "sqlite":
                raw.sqlite.set_trace_callback(None)
    finally:
        event.remove(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    assert await _count(clean_ctx, audit_event) == 3  # the read and both searches, committed together


async def test_create_then_update_in_one_transaction_leaves_only_the_new_index_rows(
    clean_ctx: AppContext,
) -> None:
    async with clean_ctx.unit_of_work() as svc:
        created = await svc.create("Patient", patient(nhs="9990000042"))
        rid = created.stored.id
        await svc.update("Patient", rid, {**patient(nhs="9990000050"), "id": rid})
    assert await _count(clean_ctx, idx_token, param="identifier", code="9990000042") == 0
    assert await _count(clean_ctx, idx_token, param="identifier", code="9990000050") == 1
    assert await _count(clean_ctx, resource_version, res_type="Patient", res_id=rid) == 2


async def test_rollback_drops_the_queue(clean_ctx: AppContext) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with clean_ctx.unit_of_work() as svc:
            await svc.create("Patient", patient(nhs="9990000069"))
            raise RuntimeError("boom")
    assert await _count(clean_ctx, resource, res_type="Patient") == 0
    assert await _count(clean_ctx, idx_token, res_type="Patient") == 0
    async with clean_ctx.unit_of_work() as svc:  # the next transaction starts with an empty queue
        assert PENDING not in svc.session.info
        await svc.create("Patient", patient(nhs="9990000077"))
    assert await _count(clean_ctx, resource_version, res_type="Patient") == 1


async def test_savepoint_keeps_rows_queued_before_it_when_it_fails(clean_ctx: AppContext) -> None:
    async with clean_ctx.unit_of_work() as svc:
        kept = await svc.create("Patient", patient(nhs="9990000085"))
        with pytest.raises(RuntimeError, match="entry failed"):
            async with svc.repo.savepoint():
                await svc.create("Patient", patient(nhs="9990000093"))
                raise RuntimeError("entry failed")
        async with svc.repo.savepoint():
            await svc.create("Patient", patient(nhs="9990000107"))
    codes = {"9990000085": 1, "9990000093": 0, "9990000107": 1}
    for code, n in codes.items():
        assert await _count(clean_ctx, idx_token, param="identifier", code=code) == n
    assert await _count(clean_ctx, resource_version, res_type="Patient", res_id=kept.stored.id) == 1


async def test_nothing_flushes_unasked_and_commit_without_a_flush_is_caught(clean_ctx: AppContext) -> None:
    """The queue is written only by an explicit flush: a statement on `resource` alone leaves it queued;
    the suite's tripwire (tests/support/queue_check.py) refuses a COMMIT or savepoint with rows queued."""
    from tests.support.queue_check import QueuedRowsMissed

    async with clean_ctx.unit_of_work() as svc:
        created = await svc.create("Patient", patient(nhs="9990000069"))
        assert await svc.repo.get("Patient", created.stored.id) is not None
        assert svc.session.info[PENDING]  # the read of `resource` left the queue alone
        with pytest.raises(QueuedRowsMissed, match="a savepoint opened with rows queued"):
            async with svc.session.begin_nested():
                pass
        assert svc.session.info[PENDING]
    with pytest.raises(QueuedRowsMissed, match="COMMIT with rows still queued"):
        async with clean_ctx.sessionmaker() as session, session.begin():
            session.info[PENDING] = {insert(idx_token): [{"resource_pk": 1}]}
    assert await _count(clean_ctx, resource_version, res_type="Patient") == 1


async def test_batch_entry_failure_keeps_the_other_entries(client: httpx.AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient(nhs="9990000115"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "gender": "nope"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": patient(nhs="9990000123"), "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "400", "201"]
    for nhs in ("9990000115", "9990000123"):
        found = await client.get("/fhir/Patient", params={"identifier": f"{NHS}|{nhs}"})
        assert found.json()["total"] == 1


@pytest.mark.pg
@pytest.mark.parametrize("ctx", ["pg"], indirect=True)  # LISTEN/NOTIFY is PostgreSQL's
async def test_postgresql_outbox_insert_notifies_dispatchers_at_commit_only(clean_ctx: AppContext) -> None:
    """Migration 0004: the outbox INSERT's trigger NOTIFYs `safeflag_outbox` at commit, once per
    transaction, and never for a rolled-back one (the writer sends no NOTIFY statement of its own)."""
    import asyncpg  # the listener is a plain asyncpg connection, like the dispatcher's

    got: asyncio.Queue[str] = asyncio.Queue()
    url = clean_ctx.engine.url.set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await conn.add_listener("safeflag_outbox", lambda *args: got.put_nowait(args[2]))
        with pytest.raises(RuntimeError, match="undo"):
            async with clean_ctx.unit_of_work() as svc:
                await svc.create("Patient", patient(nhs="9990000131"))
                raise RuntimeError("undo")
        async with clean_ctx.unit_of_work() as svc:
            await svc.create("Patient", patient(nhs="9990000158"))
            await svc.create("Patient", patient(nhs="9990000166"))
        assert await asyncio.wait_for(got.get(), 10) == "safeflag_outbox"
        await asyncio.sleep(0.2)
        assert got.empty()  # one wake-up for the committed transaction, none for the rolled-back one
    finally:
        await conn.close()


async def test_the_flush_writes_what_one_sqlalchemy_insert_per_table_writes(
    clean_ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same queued rows (every queued table, a deleted version's empty content, dates, booleans,
    references with and without identifiers) written by the flush (PostgreSQL: one unnest statement;
    SQLite: straight on sqlite3) and through SQLAlchemy's own INSERT per table give the same rows, JSON
    nulls and SQL NULLs kept apart."""
    from sqlalchemy import Text, cast, delete

    from app.storage.notify_tables import outbox_event
    from app.storage.tables import INDEX_TABLES, JsonDoc

    tables = [resource_version, *INDEX_TABLES, outbox_event]

    async def dump() -> list[list[tuple[Any, ...]]]:
        out = []
        async with clean_ctx.sessionmaker() as session:
            for t in tables:
                cols = [cast(c, Text) if isinstance(c.type, type(JsonDoc)) or c.name == "content" else c
                        for c in t.c if c.name not in ("pk", "id")]
                out.append(sorted((await session.execute(select(*cols))).all(), key=repr))
        return out

    batches: list[dict[Any, list[dict[str, Any]]]] = []  # every queue as it was flushed, in order
    flush = buffer.flush

    async def recording_flush(session: Any, **kwargs: Any) -> None:
        queued = copy.deepcopy(session.info.get(PENDING, {}))
        await flush(session, **kwargs)
        if not session.info.get(PENDING):  # written (a search leaves rows of tables it does not read)
            batches.append(queued)

    monkeypatch.setattr(buffer, "flush", recording_flush)
    async with clean_ctx.unit_of_work() as svc:
        p = await svc.create("Patient", patient(nhs="9990000174"))
        org = await svc.create("Organization", organization())
        await svc.create("Flag", flag(f"Patient/{p.stored.id}", f"Organization/{org.stored.id}"))
        gone = await svc.create("Patient", patient(nhs="9990000182"))
        await svc.delete("Patient", gone.stored.id)
    monkeypatch.undo()
    assert {stmt.table.name for queued in batches for stmt in queued} == {t.name for t in tables}
    one_statement = await dump()
    async with clean_ctx.sessionmaker() as session, session.begin():
        for t in tables:
            await session.execute(delete(t))
        for queued in batches:
            for stmt, rows in queued.items():
                await session.execute(stmt, rows)  # SQLAlchemy's own multi-row INSERT, one per table
        for t in INDEX_TABLES:  # as the delete did after its rows were written
            await session.execute(delete(t).where(t.c.resource_pk == gone.stored.pk))
    assert await dump() == one_statement
    assert any(row[-1] == "null" for row in one_statement[0])  # the deleted version's content: JSON null
