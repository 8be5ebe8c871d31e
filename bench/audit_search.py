"""AuditEvent search over a large audit trail: `AuditEvent?patient=X` and the same with a date range,
p50/p99 over a fixed number of searches, on a throwaway PostgreSQL and on SQLite.

The trail is bulk-loaded first, straight into `audit_event` and `audit_event_ref` (a valid hash chain in
lane 0, so `safeflag audit verify` passes on it): `--rows` AuditEvents as the server writes them
(reads and searches by a few dozen users, each about one of `--patients` children, one every 100 ms).
Then each search runs in process through the FHIR service as a safeguarding lead, including the
audited write every search makes (no HTTP):

    python -m bench.audit_search [--rows 1000000] [--patients 20000] [--searches 500] [--db pg|sqlite|both]
                                 [--no-freeze]

Prints the load time and one line per search shape: database, shape, p50 and p99 in milliseconds,
matches per search. Bounded: the load stops at `--rows`, the searches at `--searches` each.

Before timing, what the process has loaded (the app's modules, classes, compiled rules: over 100 000
objects) is frozen out of the garbage collector's reach (`gc.freeze`), as `safeflag serve` does once it
has loaded the app (app/prefork.py): otherwise about one search in a hundred pays for a full
collection that walks all of them, and that pause, not the SQL, is the p99 (`--no-freeze` shows it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert

from app.config import Settings
from app.context import AppContext
from app.resource_rules import resource_rules
from app.security.audit import audit_for
from app.security.audit_trail import search_rows
from app.security.principal import Principal
from app.security.scopes import ScopeSet
from app.storage.audit_tables import GENESIS, audit_event, audit_event_ref, audit_row
from app.storage.migrate import upgrade
from app.stored import format_instant
from tests.support.postgres import PgCluster, start_cluster

BASE = "https://fhir.safeflag.example/fhir"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=100)
BATCH = 5000
LEAD = Principal(sub="bench-lead", role="safeguarding-lead", scopes=ScopeSet.parse("user/*.cruds", base=BASE),
                 issuer="bench", org="Organization/la")


def _users(n: int = 40) -> list[Principal]:
    roles = ("health-visitor", "ed-clinician", "school-nurse", "safeguarding-lead")
    return [Principal(sub=f"user-{i}", role=roles[i % len(roles)], scopes=ScopeSet.parse("user/*.rs", base=BASE),
                      issuer="bench", org=f"Organization/org-{i % 8}", fhir_user=f"Practitioner/p-{i}")
            for i in range(n)]


CHILD, FLAG, REQUEST, WHEN = "Patient/child-X", "flag-X", "req-X", "2000-01-01T00:00:00.000+00:00"


def _templates(users: list[Principal]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per user, a read and a search AuditEvent as the server writes them, with placeholders, as JSON,
    and their reference rows: each row then costs a few replacements instead of building the event."""
    out = []
    for user in users:
        for interaction in ("read", "search-type"):
            doc = audit_for(interaction=interaction, principal=user, recorded=START, resource_type="Flag",
                            res_id=FLAG if interaction == "read" else None,
                            version_id=1 if interaction == "read" else None, patients=[CHILD],
                            query=None if interaction == "read" else f"Flag?patient={CHILD}", request_id=REQUEST,
                            client_address="10.0.0.1", server=BASE)
            doc["recorded"] = WHEN
            content = {"resourceType": "AuditEvent", "id": "ID-X", "meta": {"versionId": "1", "lastUpdated": WHEN},
                       **{k: v for k, v in doc.items() if k not in ("resourceType", "id", "meta")}}
            refs = [(r["param"], r["ref"]) for r in search_rows(content, "ID-X", BASE)]
            out.append((orjson.dumps(content).decode(), refs))
    return out


def _event(i: int, rng: random.Random, templates: list[tuple[str, list[tuple[str, str]]]], patients: int
           ) -> tuple[str, datetime, dict[str, Any], list[dict[str, str]]]:
    at = (START + STEP * i).replace(tzinfo=None)
    child = f"Patient/child-{rng.randrange(patients)}"
    text, refs = templates[rng.randrange(len(templates)) // 2 * 2 + (0 if i % 3 else 1)]
    event_id = f"bench-{i:08d}"
    values = {CHILD: child, FLAG: f"flag-{i % 50000}", REQUEST: f"req-{i}", WHEN: format_instant(at), "ID-X": event_id}
    for old, new in values.items():
        text = text.replace(old, new)
    links = [{"param": p, "ref": values.get(ref, ref) if ref != f"Flag/{FLAG}" else f"Flag/{values[FLAG]}",
              "event_id": event_id} for p, ref in refs]
    return event_id, at, orjson.loads(text), links


async def load(ctx: AppContext, rows: int, patients: int) -> float:
    """Append `rows` chained AuditEvents to lane 0 in batches; seconds taken."""
    rng, templates = random.Random(7), _templates(_users())
    started, prev = time.perf_counter(), GENESIS
    for first in range(0, rows, BATCH):
        batch, refs = [], []
        for i in range(first, min(rows, first + BATCH)):
            event_id, at, content, links = _event(i, rng, templates, patients)
            row = audit_row(0, i + 1, prev, event_id, at, None, content)
            prev = row["hash"]
            batch.append(row)
            refs += links
        async with ctx.engine.begin() as conn:
            await conn.execute(insert(audit_event), batch)
            await conn.execute(insert(audit_event_ref), refs)
    async with ctx.engine.connect() as conn:
        if ctx.settings.is_sqlite:
            await conn.exec_driver_sql("ANALYZE")
        else:  # planner statistics, as autovacuum keeps them on a live server
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.exec_driver_sql("VACUUM ANALYZE audit_event")
            await auto.exec_driver_sql("VACUUM ANALYZE audit_event_ref")
    return time.perf_counter() - started


async def timed(ctx: AppContext, queries: list[list[tuple[str, str]]]) -> tuple[float, float, float]:
    """p50 and p99 in ms, and the mean number of matches."""
    times, found = [], 0
    for query in queries:
        start = time.perf_counter()
        async with ctx.unit_of_work(LEAD) as svc:
            bundle = await svc.search("AuditEvent", query)
        times.append((time.perf_counter() - start) * 1000)
        found += len(bundle.get("entry", []))
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], found / len(queries)


async def measure(label: str, url: str, data_dir: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Load the trail, time each kind of search; p50 and p99 in ms and the mean matches, by kind."""
    settings = Settings(data_dir=data_dir, database_url=url, base_url=BASE.removesuffix("/fhir"),
                        dispatcher_in_process=False, _env_file=None)  # type: ignore[call-arg]
    ctx = AppContext.from_settings(settings, interceptors=resource_rules())
    await upgrade(ctx.engine)
    out: dict[str, dict[str, float]] = {}
    try:
        seconds = await load(ctx, args.rows, args.patients)
        print(f"{label:10} loaded {args.rows} audit rows in {seconds:.1f} s", flush=True)
        if not args.no_freeze:  # the collector's full collections stop walking what is loaded (see above)
            gc.collect()
            gc.freeze()
        rng = random.Random(11)
        children = [f"Patient/child-{rng.randrange(args.patients)}" for _ in range(args.searches)]
        span = STEP * args.rows
        shapes = {
            "AuditEvent?patient=X": [[("patient", c)] for c in children],
            "AuditEvent?patient=X&date=ge..&date=lt.. (a tenth of the trail)": [
                [("patient", c), ("date", "ge" + format_instant((START + span * (k % 9) / 10).replace(tzinfo=None))),
                 ("date", "lt" + format_instant((START + span * (k % 9 + 1) / 10).replace(tzinfo=None)))]
                for k, c in enumerate(children)],
        }
        for name, queries in shapes.items():
            await timed(ctx, queries[: max(1, len(queries) // 10)])  # warm-up
            p50, p99, matches = await timed(ctx, queries)
            out[name] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "matches": round(matches, 1)}
            print(f"{label:10} {name:66} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  ({matches:.1f} matches, "
                  f"{len(queries)} searches)", flush=True)
    finally:
        await ctx.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--patients", type=int, default=20_000)
    ap.add_argument("--searches", type=int, default=500)
    ap.add_argument("--db", choices=("sqlite", "pg", "both"), default="both")
    ap.add_argument("--no-freeze", action="store_true", help="leave what is loaded to the collector's full collections")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="safeflag-audit-bench-"))
    if args.db in ("pg", "both"):
        cluster: PgCluster = start_cluster()
        try:
            cluster.psql("CREATE DATABASE audit_bench")
            await measure("PostgreSQL", cluster.url("audit_bench"), tmp, args)
        finally:
            cluster.stop()
    if args.db in ("sqlite", "both"):
        await measure("SQLite", f"sqlite+aiosqlite:///{tmp / 'audit.db'}", tmp, args)


if __name__ == "__main__":
    asyncio.run(main())
