"""The audit trail's hash chains (app/storage/audit_tables.py, app/security/audit_trail.py,
app/security/audit_verify.py): every audited access appends a chained row; a clean trail verifies, and
each kind of tampering done directly in the database (a changed column, a removed row, a forged row,
two rows swapped, a cut-off tail against a checkpoint) is found at its lane and position; both databases.
On PostgreSQL, concurrent requests append to lanes of their own and the chains still verify."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.testing import CliRunner

from app.cli import app as cli_app
from app.context import AppContext
from app.main import create_app
from app.resource_rules import resource_rules
from app.security.audit_verify import Report, verify
from app.storage.audit_guards import drop_statements
from app.storage.audit_tables import audit_event, audit_event_ref, audit_row, search_columns
from app.storage.migrate import upgrade
from app.storage.tables import resource
from tests.conftest import BASE_URL, _pg_url, admin_token
from tests.notify.owners import bearer
from tests.safeguarding.support import CHILD, example, flag
from tests.support.fresh_db import fresh_context
from tests.support.postgres import PgCluster

LA = "Organization/la"
ED = "Organization/ed"


async def _history(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """A varied trail: writes, reads, searches and refusals by several principals."""
    assert (await client.put("/fhir/Patient/example-child", json=example("example-child"))).status_code == 201
    made = await client.post("/fhir/Flag", json=flag("child-protection-plan", CHILD))
    assert made.status_code == 201, made.text
    lead = bearer(ctx, "safeguarding-lead", "lead-1", LA)
    ed = bearer(ctx, "ed-clinician", "ed-1", ED)
    for headers in (lead, ed, lead):
        assert (await client.get("/fhir/Patient/example-child", headers=headers)).status_code == 200
    assert (await client.get("/fhir/Flag", params={"patient": CHILD}, headers=ed)).status_code == 200
    assert (await client.get("/fhir/AuditEvent", headers=ed)).status_code == 403
    assert (await client.get("/fhir/Patient/nobody", headers=lead)).status_code == 404


_DATABASES = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def fresh(request: pytest.FixtureRequest, pg_cluster: PgCluster | None) -> AsyncIterator[tuple[AppContext, httpx.AsyncClient]]:
    """A database of its own and an admin API client: a new connection pool, so that the requests of a test,
    made one after another, append to one lane on PostgreSQL too (each connection writes its own lane)."""
    async with fresh_context(request.param, pg_cluster, f"safeflag_audit_trail_{next(_DATABASES)}") as ctx:
        await upgrade(ctx.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)), base_url=BASE_URL,
                                     headers={"Authorization": f"Bearer {admin_token(ctx)}"}) as api:
            yield ctx, api


async def _rows(conn: AsyncConnection) -> list[Any]:
    return list((await conn.execute(select(audit_event).order_by(audit_event.c.lane, audit_event.c.position))).all())


async def unguarded(conn: AsyncConnection) -> None:
    """Drop the triggers that keep the trail append-only (app/storage/audit_guards.py), as someone with
    DDL rights could: the tampering below is then possible, and the verifier must find it."""
    for stmt in drop_statements(conn.dialect.name):
        await conn.exec_driver_sql(stmt)


async def _tampered(ctx: AppContext, tamper: Any) -> Report:
    """`verify` after `tamper(conn, rows)` with the triggers dropped, all in one transaction that is then
    rolled back."""
    async with ctx.engine.connect() as conn:
        await conn.begin()
        await unguarded(conn)
        await tamper(conn, await _rows(conn))
        report = await conn.run_sync(verify)
        await conn.rollback()
    return report


async def test_every_audited_access_appends_a_chained_row(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    clean_ctx, client = fresh
    await _history(client, clean_ctx)
    async with clean_ctx.engine.connect() as conn:
        rows = await _rows(conn)
        as_resources = (await conn.execute(select(resource.c.pk).where(resource.c.res_type == "AuditEvent"))).all()
        report = await conn.run_sync(verify)
    assert len(rows) == 8 and not as_resources  # 2 writes, 3 reads, 1 search, 1 refused search, 1 read not found
    assert all(r.content["id"] == r.event_id and r.content["meta"]["versionId"] == "1" for r in rows)
    for r in rows:
        assert {k: getattr(r, k) for k in search_columns(r.content)} == search_columns(r.content)
    assert [(r.subtype, r.outcome) for r in sorted(rows, key=lambda r: r.recorded)][-2:] == [
        ("search-type", "4"), ("read", "4")]
    assert report.clean and report.rows == 8, report.findings


async def test_each_kind_of_tampering_is_found_at_its_position(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    clean_ctx, client = fresh
    await _history(client, clean_ctx)
    async with clean_ctx.engine.connect() as conn:
        rows = await _rows(conn)
    assert {r.lane for r in rows} == {0}
    lane, chain = 0, rows
    mid, nxt = chain[1], chain[2]
    at = f"lane {lane} position {mid.position}"

    async def alter_json(conn: AsyncConnection, _rows: list[Any]) -> None:
        await conn.execute(update(audit_event).where(audit_event.c.seq == mid.seq).values(
            content={**mid.content, "outcomeDesc": "nothing happened"}))

    async def alter_column(conn: AsyncConnection, _rows: list[Any]) -> None:
        await conn.execute(update(audit_event).where(audit_event.c.seq == mid.seq).values(patient="Patient/other"))

    async def remove(conn: AsyncConnection, _rows: list[Any]) -> None:
        await conn.execute(delete(audit_event).where(audit_event.c.seq == mid.seq))

    async def forge_end(conn: AsyncConnection, _rows: list[Any]) -> None:  # a row that claims the next place
        last = chain[-1]
        forged = audit_row(lane, last.position + 1, last.hash, "forged", last.recorded, None, mid.content)
        await conn.execute(insert(audit_event).values(**{**forged, "hash": "f" * 64}))

    async def forge_middle(conn: AsyncConnection, _rows: list[Any]) -> None:  # later rows moved up one place
        for r in reversed(chain[1:]):
            await conn.execute(update(audit_event).where(audit_event.c.seq == r.seq).values(position=r.position + 1))
        forged = audit_row(lane, mid.position, chain[0].hash, "forged", mid.recorded, None,
                           {**mid.content, "id": "forged"})
        await conn.execute(insert(audit_event).values(**forged))

    async def swap(conn: AsyncConnection, _rows: list[Any]) -> None:
        await conn.execute(update(audit_event).where(audit_event.c.seq == mid.seq).values(position=-1))
        await conn.execute(update(audit_event).where(audit_event.c.seq == nxt.seq).values(position=mid.position))
        await conn.execute(update(audit_event).where(audit_event.c.seq == mid.seq).values(position=nxt.position))

    after = f"lane {lane} position {nxt.position}"
    follow = "does not follow the row before it (a row was removed, inserted or reordered)"
    coded = "column(s) type, subtype altered (they do not match the AuditEvent)"  # a row without its coding rows
    cases = {
        alter_json: [f"{at}: altered (AuditEvent/{mid.event_id} does not match its hash)"],
        alter_column: [f"{at}: column(s) patient altered (they do not match the AuditEvent)"],
        remove: [f"lane {lane}: position(s) {mid.position} missing (rows removed)", f"{after}: {follow}",
                 f"AuditEvent/{mid.event_id}: type/subtype search rows of an event the trail does not hold (its row "
                 "was removed, or they were inserted)"],
        forge_end: [f"lane {lane} position {chain[-1].position + 1}: altered (AuditEvent/forged does not match its "
                    "hash)", f"lane {lane} position {chain[-1].position + 1}: {coded}"],
        forge_middle: [f"{at}: {coded}", f"{after}: {follow}"] + [  # each moved row's position is part of its hash
            f"lane {lane} position {r.position + 1}: altered (AuditEvent/{r.event_id} does not match its hash)"
            for r in chain[1:]],
        swap: [f"{at}: {follow}", f"{at}: altered (AuditEvent/{nxt.event_id} does not match its hash)",
               f"{after}: {follow}", f"{after}: altered (AuditEvent/{mid.event_id} does not match its hash)",
               f"lane {lane} position {chain[3].position}: {follow}"],
    }
    for tamper, expected in cases.items():
        report = await _tampered(clean_ctx, tamper)
        assert report.findings == expected, tamper.__name__
    async with clean_ctx.engine.connect() as conn:  # every tampering above was rolled back
        assert (await conn.run_sync(verify)).clean


async def test_a_cut_off_tail_is_found_against_a_checkpoint(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    clean_ctx, client = fresh
    await _history(client, clean_ctx)
    async with clean_ctx.engine.connect() as conn:
        heads = (await conn.run_sync(verify)).heads
    lane, (position, _digest) = next(iter(sorted(heads.items())))

    async def cut(conn: AsyncConnection, _rows: list[Any]) -> None:  # the last row and its search rows
        last = audit_event.c.lane == lane, audit_event.c.position == position
        event_id = (await conn.execute(select(audit_event.c.event_id).where(*last))).scalar_one()
        await conn.execute(delete(audit_event_ref).where(audit_event_ref.c.event_id == event_id))
        await conn.execute(delete(audit_event).where(*last))

    assert (await _tampered(clean_ctx, cut)).clean  # a shorter chain is still a chain...

    async with clean_ctx.engine.connect() as conn:
        await conn.begin()
        await unguarded(conn)
        await cut(conn, [])

        def check(sync: Connection) -> Report:
            return verify(sync, heads)

        report = await conn.run_sync(check)
        await conn.rollback()
    assert report.findings == [f"lane {lane} position {position}: checkpointed row missing (the trail was cut short)"]


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def cli_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            pg_cluster: PgCluster | None) -> tuple[Path, str]:
    """A data directory and the database the commands run on (set in the environment, as for a user)."""
    url = (f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}" if request.param == "sqlite"
           else _pg_url(pg_cluster, f"audit_cli_{uuid.uuid4().hex[:10]}"))
    monkeypatch.setenv("SAFEFLAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SAFEFLAG_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path, url


def test_safeflag_audit_verify_and_checkpoint(cli_env: tuple[Path, str]) -> None:
    from app.config import Settings

    data_dir, url = cli_env

    async def make_trail() -> None:
        ctx = AppContext.from_settings(Settings(data_dir=data_dir, database_url=url, base_url=BASE_URL,
                                                dispatcher_in_process=False, rate_limit_per_second=0,
                                                _env_file=None),  # type: ignore[call-arg]
                                       interceptors=resource_rules())

        await upgrade(ctx.engine)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)), base_url=BASE_URL,
                                         headers={"Authorization": f"Bearer {admin_token(ctx)}"}) as api:
                await _history(api, ctx)
        finally:
            await ctx.close()

    async def tamper() -> None:
        from app.storage.db import create_engine

        engine = create_engine(url)
        async with engine.begin() as conn:
            await unguarded(conn)
            await conn.execute(update(audit_event).where(audit_event.c.lane == 0, audit_event.c.position == 3)
                               .values(outcome="8"))
            last = audit_event.c.lane == 0, audit_event.c.position == 8  # the last row, and its search rows
            event_id = (await conn.execute(select(audit_event.c.event_id).where(*last))).scalar_one()
            await conn.execute(delete(audit_event_ref).where(audit_event_ref.c.event_id == event_id))
            await conn.execute(delete(audit_event).where(*last))
        await engine.dispose()

    asyncio.run(make_trail())
    runner = CliRunner()
    checkpoint = runner.invoke(cli_app, ["audit", "checkpoint"])
    assert checkpoint.exit_code == 0, checkpoint.output
    heads = json.loads(checkpoint.stdout)
    assert heads["rows"] == 8 and list(heads["lanes"]) == ["0"] and heads["lanes"]["0"]["position"] == 8
    (data_dir / "cp.json").write_text(checkpoint.stdout)
    ok = runner.invoke(cli_app, ["audit", "verify", "--checkpoint", "cp.json"])
    assert (ok.exit_code, ok.stdout) == (0, "audit trail verified: 8 rows in 1 lane(s)\n")
    asyncio.run(tamper())
    bad = runner.invoke(cli_app, ["audit", "verify", "--checkpoint", "cp.json"])
    assert bad.exit_code == 1
    assert bad.stdout.splitlines() == [
        "lane 0 position 3: column(s) outcome altered (they do not match the AuditEvent)",
        "lane 0 position 8: checkpointed row missing (the trail was cut short)",
        "audit trail NOT verified: 2 problem(s) in 7 rows in 1 lane(s)",
    ]
    (data_dir / "junk.json").write_text("{")
    junk = runner.invoke(cli_app, ["audit", "verify", "--checkpoint", "junk.json"])
    assert junk.exit_code == 2
    assert junk.stderr.startswith("error: cannot read the checkpoint junk.json: JSONDecodeError: ")
    assert "\n" not in junk.stderr.rstrip("\n")


@pytest.mark.pg
async def test_concurrent_requests_on_postgresql_chain_in_lanes_that_verify(pg_cluster: PgCluster | None) -> None:

    async with fresh_context("pg", pg_cluster, "safeflag_audit_lanes") as ctx:
        await upgrade(ctx.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)), base_url=BASE_URL,
                                     headers={"Authorization": f"Bearer {admin_token(ctx)}"}) as client:
            assert (await client.put("/fhir/Patient/example-child", json=example("example-child"))).status_code == 201
            lead = bearer(ctx, "safeguarding-lead", "lead-1", LA)

            async def access(i: int) -> int:
                if i % 3 == 0:
                    return (await client.get("/fhir/Flag", params={"patient": CHILD}, headers=lead)).status_code
                return (await client.get("/fhir/Patient/example-child", headers=lead)).status_code

            statuses = await asyncio.gather(*(access(i) for i in range(120)))
        assert set(statuses) == {200}
        async with ctx.engine.connect() as conn:
            report = await conn.run_sync(verify)
            lanes = (await conn.execute(select(func.count(func.distinct(audit_event.c.lane))))).scalar_one()
    assert report.clean, report.findings
    assert report.rows == 121
    assert lanes >= 2  # concurrent transactions wrote different chains: none waited for another's commit


@pytest.mark.parametrize("db", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def test_the_upgrade_chains_the_audit_events_stored_before_it(db: str, pg_cluster: PgCluster | None) -> None:
    from datetime import UTC, datetime, timedelta

    from app.security.audit import audit_for
    from app.security.principal import Principal
    from app.security.scopes import ScopeSet
    from app.storage.repository import Repository

    when = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    reader = Principal(sub="old-lead", role="safeguarding-lead", scopes=ScopeSet.parse("user/*.cruds"), issuer="t",
                       org=LA)
    async with fresh_context(db, pg_cluster, "safeflag_audit_backfill") as ctx:
        await upgrade(ctx.engine, "20261206_0013")
        stored = []
        async with ctx.sessionmaker() as session, session.begin():
            repo = Repository(session, clock=ctx.clock, ids=ctx.ids, indexer=ctx.indexer)  # type: ignore[arg-type]
            for minutes in (5, 1, 3):  # stored out of time order
                at = when + timedelta(minutes=minutes)
                event = audit_for(interaction="read", principal=reader, recorded=at, resource_type="Patient",
                                  res_id="example-child")
                stored.append((at.replace(tzinfo=None), (await repo.create("AuditEvent", event, org=LA, now=at)).id))
            await repo.flush()
        await upgrade(ctx.engine)
        async with ctx.engine.connect() as conn:
            rows = await _rows(conn)
        assert [(r.lane, r.position, r.event_id, r.recorded, r.created_by_org) for r in rows] == [
            (0, i, rid, at, LA) for i, (at, rid) in enumerate(sorted(stored), start=1)]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)), base_url=BASE_URL,
                                     headers={"Authorization": f"Bearer {admin_token(ctx)}"}) as api:
            assert (await api.get("/fhir/Patient/example-child")).status_code == 404
        async with ctx.engine.connect() as conn:
            report = await conn.run_sync(verify)
            after = await _rows(conn)
    assert report.clean and report.rows == 4, report.findings
    assert (after[-1].lane, after[-1].position, after[-1].subtype, after[-1].outcome) == (0, 4, "read", "4")
