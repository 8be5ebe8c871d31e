"""The floor: the least CPU a create Flag can cost on this stack while doing what SafeFlag requires of it.

The target for create Flag is ">= 50 % of the raw ceiling". This script measures, in one
process and one run, the CPU per `POST /fhir/Flag` of three ASGI apps driven without sockets:

- **ceiling**: bench/ceiling_app.py (one INSERT of the client's JSON, nothing else);
- **floor**: the same FastAPI stack doing only the cheapest form of each thing SafeFlag requires of
  a create: the bearer token checked (SafeFlag's verifier, which caches verified
  tokens), the body parsed and validated by the fhir.resources R4B model (none of SafeFlag's further
  checks: bindings, invariants, profiles), the NHS number's check digit, server `id`/`meta`, then one
  transaction on the raw sqlite3 connection (no SQLAlchemy per statement) that writes the `resource`
  row, its version row, its search-index rows (SafeFlag's index definitions), the outbox row, and a
  minimal BALP-shaped AuditEvent appended to the audit trail (its chained row and search rows, built by
  SafeFlag's own functions), into SafeFlag's own schema;
  no policy, no subject lookup, no duplicate check, no middleware, no metrics, no log line;
- **SafeFlag**: `create_app()` as served, with all of that and everything else.

Sockets and HTTP parsing are left out of all three alike, so the figures are CPU per request of the
application itself. If the floor's ratio to the ceiling is below 0.5, no implementation of the required
work on this stack can meet the target; the ratio of SafeFlag to the floor is what is left to win.

    python -m bench.floor [requests] [sqlite] [pg]    # default: 2000 per app, both databases
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fhir.resources.R4B.flag import Flag
from starlette.responses import Response

from app.config import Settings
from app.context import AppContext
from app.fhir.nhs_number import NHS_NUMBER_SYSTEM, is_valid
from app.fhir.search.definitions import make_indexer
from app.main import create_app
from app.resource_rules import resource_rules
from app.security.audit_trail import search_rows
from app.security.runtime import SecurityRuntime
from app.security.tokens import default_scope
from app.storage.audit_tables import GENESIS, audit_row
from app.storage.migrate import upgrade
from app.storage.repository import stamp, utc_ms
from bench.ceiling_app import create_app as ceiling_app
from bench.procs import tree_cpu_seconds
from bench.workloads import CATEGORY_CODES, flag_body, nhs_numbers, organization_body, patient_body
from tests.support.postgres import start_cluster  # the test suite's throwaway cluster, as bench/run.py uses

BASE = "http://127.0.0.1:8080"
FHIR_JSON = "application/fhir+json; charset=utf-8"
_INDEX_SQL = {
    "tokens": "INSERT INTO idx_token (resource_pk, res_type, param, system, code) VALUES (?, ?, ?, ?, ?)",
    "strings": "INSERT INTO idx_string (resource_pk, res_type, param, norm, exact) VALUES (?, ?, ?, ?, ?)",
    "dates": "INSERT INTO idx_date (resource_pk, res_type, param, low, high) VALUES (?, ?, ?, ?, ?)",
    "references": "INSERT INTO idx_reference (resource_pk, res_type, param, target_type, target_id, url, "
    "ident_system, ident_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
}


def _sql_time(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f")


def _bind(value: Any) -> Any:
    return _sql_time(value) if isinstance(value, datetime) else value


def _write(conn: Any, indexer: Any, rtype: str, doc: dict[str, Any], ts: datetime, outbox: bool) -> None:
    """One resource's rows, straight through sqlite3 (the cheapest way on this stack)."""
    stamp_ = _sql_time(ts)
    content = orjson.dumps(doc).decode()
    pk = conn.execute(
        "INSERT INTO resource (res_type, res_id, version_id, last_updated, deleted, content, created_by_org) "
        "VALUES (?, ?, 1, ?, 0, ?, NULL)", (rtype, doc["id"], stamp_, content)).lastrowid
    conn.execute(
        "INSERT INTO resource_version (resource_pk, res_type, res_id, version_id, last_updated, deleted, method, "
        "content) VALUES (?, ?, ?, 1, ?, 0, 'POST', ?)", (pk, rtype, doc["id"], stamp_, content))
    rows = indexer(rtype, doc)
    for table, sql in _INDEX_SQL.items():
        found = getattr(rows, table)
        if found:
            conn.executemany(sql, [(pk, rtype, *(_bind(v) for v in row)) for row in found])
    if outbox:
        conn.execute(
            "INSERT INTO outbox_event (res_type, res_id, version_id, action, occurred_at, processed_at) "
            "VALUES (?, ?, 1, 'create', ?, NULL)", (rtype, doc["id"], stamp_))


_PG_WRITE = """
WITH r AS (INSERT INTO resource (res_type, res_id, version_id, last_updated, deleted, content, created_by_org)
           VALUES ($1, $2, 1, $3, false, $4::jsonb, NULL) RETURNING pk),
  v AS (INSERT INTO resource_version (resource_pk, res_type, res_id, version_id, last_updated, deleted, method,
                                      content)
        SELECT pk, $1, $2, 1, $3, false, 'POST', $4::jsonb FROM r),
  t AS (INSERT INTO idx_token (resource_pk, res_type, param, system, code)
        SELECT r.pk, $1, u.* FROM r, unnest($5::text[], $6::text[], $7::text[]) AS u),
  s AS (INSERT INTO idx_string (resource_pk, res_type, param, norm, exact)
        SELECT r.pk, $1, u.* FROM r, unnest($8::text[], $9::text[], $10::text[]) AS u),
  d AS (INSERT INTO idx_date (resource_pk, res_type, param, low, high)
        SELECT r.pk, $1, u.* FROM r, unnest($11::text[], $12::timestamp[], $13::timestamp[]) AS u),
  f AS (INSERT INTO idx_reference (resource_pk, res_type, param, target_type, target_id, url, ident_system,
                                   ident_value)
        SELECT r.pk, $1, u.* FROM r, unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
                                            $19::text[]) AS u),
  o AS (INSERT INTO outbox_event (res_type, res_id, version_id, action, occurred_at, processed_at)
        SELECT $1, $2, 1, 'create', $3, NULL WHERE $20)
SELECT pk FROM r
"""


async def _write_pg(conn: Any, indexer: Any, rtype: str, doc: dict[str, Any], ts: datetime, outbox: bool) -> None:
    """One resource's rows in one round trip and one statement (the cheapest way on asyncpg)."""
    rows = indexer(rtype, doc)
    columns: list[Any] = []
    for table, width in (("tokens", 3), ("strings", 3), ("dates", 3), ("references", 6)):
        found = getattr(rows, table)
        columns.extend([list(col) for col in zip(*found, strict=True)] if found else [[] for _ in range(width)])
    await conn.fetchval(_PG_WRITE, rtype, doc["id"], ts, orjson.dumps(doc).decode(), *columns, outbox)


class _Trail:
    """The floor's end of the audit trail: a lane of its own (the setup's requests through SafeFlag wrote
    lane 0), its head kept in memory as SafeFlag's connection keeps its lane's; each AuditEvent one
    chained row and its search rows."""

    LANE = 9999

    def __init__(self) -> None:
        self.position, self.prev = 0, GENESIS

    def rows(self, audit: dict[str, Any], ts: datetime) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
        row = audit_row(self.LANE, self.position + 1, self.prev, audit["id"], ts, None, audit)
        self.position, self.prev = row["position"], row["hash"]
        row["content"] = orjson.dumps(audit).decode()
        return row, [(r["param"], r["ref"], r["event_id"]) for r in search_rows(audit, audit["id"], BASE)]

    @staticmethod
    def write(conn: Any, row: dict[str, Any], refs: list[tuple[str, str, str]]) -> None:
        conn.execute(f"INSERT INTO audit_event ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                     [_bind(v) for v in row.values()])
        conn.executemany("INSERT INTO audit_event_ref (param, ref, event_id) VALUES (?, ?, ?)", refs)

    @staticmethod
    async def write_pg(conn: Any, row: dict[str, Any], refs: list[tuple[str, str, str]]) -> None:
        values = ", ".join(f"${i}::jsonb" if k == "content" else f"${i}" for i, k in enumerate(row, 1))
        n = len(row)
        await conn.execute(
            f"WITH e AS (INSERT INTO audit_event ({', '.join(row)}) VALUES ({values})) "
            f"INSERT INTO audit_event_ref (param, ref, event_id) "
            f"SELECT * FROM unnest(${n + 1}::text[], ${n + 2}::text[], ${n + 3}::text[])",
            *row.values(), *([list(c) for c in zip(*refs, strict=True)] if refs else [[], [], []]))


def _audit(flag: dict[str, Any], claims: dict[str, Any], ts: datetime) -> dict[str, Any]:
    """A minimal BALP-shaped AuditEvent of the create: who, what, when, outcome."""
    subject = flag.get("subject") or {}
    return stamp({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "create"}],
        "action": "C", "recorded": ts.isoformat(timespec="milliseconds") + "Z", "outcome": "0",
        "agent": [{"who": {"identifier": {"system": f"{BASE}/auth", "value": claims["sub"]}}, "requestor": True}],
        "source": {"observer": {"display": "SafeFlag"}},
        "entity": [{"what": {"reference": f"Flag/{flag['id']}"}}, {"what": subject}],
    }, str(uuid.uuid4()), 1, ts)


def floor_app(ctx: AppContext) -> FastAPI:
    verifier = SecurityRuntime.from_settings(ctx.settings).verifier
    indexer = make_indexer(ctx.settings.fhir_base)
    pg = ctx.engine.dialect.name == "postgresql"
    trail = _Trail()
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/fhir/Flag")
    async def create(request: Request) -> Response:
        claims = await verifier.verify(request.headers["authorization"].removeprefix("Bearer "))
        body = orjson.loads(await request.body())
        Flag.model_validate(body)
        for ident in [(body.get("subject") or {}).get("identifier") or {}]:
            if ident.get("system") == NHS_NUMBER_SYSTEM and not is_valid(ident.get("value", "")):
                return Response(b"{}", 422, media_type=FHIR_JSON)
        ts = utc_ms(datetime.now(UTC))
        doc = stamp(body, str(uuid.uuid4()), 1, ts)
        audit = _audit(doc, claims, ts)
        async with ctx.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE on SafeFlag's one writer connection
            raw = (await conn.get_raw_connection()).driver_connection
            row, refs = trail.rows(audit, ts)
            if pg:
                await _write_pg(raw, indexer, "Flag", doc, ts, outbox=True)
                await _Trail.write_pg(raw, row, refs)
            else:
                _write(raw.sqlite, indexer, "Flag", doc, ts, outbox=True)
                _Trail.write(raw.sqlite, row, refs)
        location = f"{ctx.settings.fhir_base}/Flag/{doc['id']}/_history/1"
        return Response(orjson.dumps(doc), 201, {"Location": location, "ETag": 'W/"1"'}, media_type=FHIR_JSON)

    return app


async def call(app: Any, path: str, body: dict[str, Any], token: str | None) -> tuple[int, bytes]:
    raw = orjson.dumps(body)
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/fhir+json"),
               (b"accept", b"application/fhir+json"), (b"content-length", str(len(raw)).encode())]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080)}
    messages = [{"type": "http.request", "body": raw, "more_body": False}]
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
        else:
            out["body"] += msg.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["body"]


def _cpu(backends: int | None) -> float:
    return time.process_time() + (tree_cpu_seconds(backends) if backends else 0.0)


async def _cpu_per_create(app: Any, bodies: list[dict[str, Any]], token: str | None, warm: int,
                          ctx: AppContext, backends: int | None) -> float:
    for body in bodies[:warm]:
        status, text = await call(app, "/fhir/Flag", body, token)
        assert status == 201, text
    if backends:
        # planner statistics with Flags in them, as autovacuum keeps them on a live server: without any,
        # PostgreSQL may drive the duplicate-flag check from every Flag's subject row, a plan that grows
        # with the table (SQLite has no statistics here and needs none: its plans are fixed by the SQL)
        async with ctx.engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
    c0 = _cpu(backends)
    for body in bodies[warm:]:
        status, text = await call(app, "/fhir/Flag", body, token)
        assert status == 201, text
    return (_cpu(backends) - c0) * 1000 / (len(bodies) - warm)


async def main(n: int, db: str) -> dict[str, float]:
    """CPU ms per create of each app; on PostgreSQL the backends' CPU is counted too."""
    tmp = Path(tempfile.mkdtemp(prefix="floor-"))
    cluster = start_cluster() if db == "pg" else None
    backends = int((cluster.datadir / "postmaster.pid").read_text().split()[0]) if cluster else None
    out: dict[str, float] = {}
    try:
        for name in ("ceiling", "floor", "safeflag"):
            if cluster:
                cluster.psql(f"CREATE DATABASE {name}")
                url = cluster.url(name)
            else:
                url = f"sqlite+aiosqlite:///{tmp / name / 'db.sqlite'}"
            settings = Settings(data_dir=tmp / name, database_url=url, base_url=BASE, dispatcher_in_process=False,
                                rate_limit_per_second=0, _env_file=None)
            out[name] = await _measure(name, settings, n, backends)
    finally:
        if cluster:
            cluster.stop()
    return out


async def _measure(name: str, settings: Settings, n: int, backends: int | None) -> float:
    ctx = AppContext.from_settings(settings, interceptors=resource_rules())
    await upgrade(ctx.engine)  # SafeFlag's schema, for the ceiling too (its own table is created beside it)
    token = SecurityRuntime.from_settings(settings).issuer.mint(sub="bench", role="admin",
                                                               scope=default_scope("admin"), ttl=3600)
    _, text = await call(create_app(ctx=ctx), "/fhir/Organization", organization_body(1), token)
    org = orjson.loads(text)["id"]
    patients = []
    async with ctx.unit_of_work() as svc:
        for i, nhs in enumerate(nhs_numbers(0, n)):
            patients.append(((await svc.create("Patient", patient_body(nhs, i))).stored.id, nhs))
    bodies = [flag_body(pid, nhs, org, CATEGORY_CODES[i % len(CATEGORY_CODES)]) for i, (pid, nhs) in enumerate(patients)]
    try:
        if name != "ceiling":
            app = floor_app(ctx) if name == "floor" else create_app(ctx=ctx)
            return await _cpu_per_create(app, bodies, token, n // 10, ctx, backends)
        os.environ["BENCH_CEILING_DB"] = settings.effective_database_url
        ceiling = ceiling_app()
        async with ceiling.router.lifespan_context(ceiling):
            return await _cpu_per_create(ceiling, bodies, None, n // 10, ctx, backends)
    finally:
        await ctx.close()


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for kind in sys.argv[2:] or ["sqlite", "pg"]:
        cpu = asyncio.run(main(count, kind))
        print(f"CPU per create Flag on {kind}, in process{' + PostgreSQL backends' if kind == 'pg' else ''}, "
              f"{count - count // 10} requests each after {count // 10} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
        for name, ms in cpu.items():
            print(f"  {name:9s} {ms:6.3f} ms   ratio to ceiling {cpu['ceiling'] / ms:5.2f}")
        print(f"  SafeFlag / floor: {cpu['floor'] / cpu['safeflag']:.2f}", flush=True)
