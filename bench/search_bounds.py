"""Time the costliest searches the search bounds still allow (app/fhir/search/limits.py), on SQLite and
on a throwaway PostgreSQL, in process through the FHIR service (no HTTP): the bounds must keep the
worst allowed query fast on both. Also times the same shapes just past the bound, to show they are
refused before any SQL runs, and the largest allowed batch and transaction Bundles.

    python -m bench.search_bounds [--patients 2000] [--db sqlite|pg|both]

Prints one line per shape: database, shape, status, milliseconds (median of 3 runs).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.api.responses import Preferences
from app.config import Settings
from app.context import AppContext
from app.errors import FhirError
from app.interactions.transaction import process
from app.resource_rules import resource_rules
from app.storage.migrate import upgrade
from bench.workloads import CATEGORY_CODES, flag_body, nhs_numbers, organization_body, patient_body
from tests.support.postgres import PgCluster, start_cluster

Query = list[tuple[str, str]]


def shapes(limits_c: int, limits_v: int, org: str) -> list[tuple[str, str, Query]]:
    per = max(1, limits_v // limits_c)
    return [
        ("repeated name", "Patient", [("name", "a")] * limits_c),
        ("repeated name, values spread", "Patient", [("name", ",".join(["a"] * per))] * limits_c),
        ("one name, all values", "Patient", [("name", ",".join(f"a{i}" for i in range(limits_v)))]),
        ("repeated name:contains", "Patient", [("name:contains", "a")] * limits_c),
        ("repeated family:contains, sorted", "Patient",
         [("family:contains", "e")] * (limits_c - 2) + [("_sort", "family,-birthdate")]),
        ("repeated identifier:not", "Patient", [("identifier:not", "x|y")] * limits_c),
        ("chained subject.name", "Flag", [("subject.name", "a")] * limits_c),
        ("patient:identifier, all values", "Flag",
         [("patient:identifier", ",".join(f"https://fhir.nhs.uk/Id/nhs-number|{i}" for i in range(limits_v)))]),
        ("repeated author + status", "Flag", [("author", org), ("status", "active")] * (limits_c // 2)),
        ("_id, all values", "Patient", [("_id", ",".join(f"id{i}" for i in range(limits_v)))]),
        ("_revinclude everything", "Patient", [("name", "a")] + [("_revinclude", "*")] * (limits_c - 1)),
        ("over the bound: repeated name", "Patient", [("name", "a")] * (limits_c + 1)),
        ("over the bound: values", "Patient", [("name", ",".join(["a"] * (limits_v + 1)))]),
    ]


async def seed(ctx: AppContext, patients: int) -> str:
    async with ctx.unit_of_work() as svc:
        org = (await svc.create("Organization", organization_body(1))).stored
    assert org is not None
    numbers = nhs_numbers(0, patients)
    for start in range(0, patients, 200):
        async with ctx.unit_of_work() as svc:
            for i, nhs in enumerate(numbers[start:start + 200], start):
                body = patient_body(nhs, i)
                body["name"] = [{"family": f"Family{i % 97}", "given": [f"a{i % 50}"]}]
                pid = (await svc.create("Patient", body)).stored
                assert pid is not None
                if i % 2 == 0:
                    await svc.create("Flag", flag_body(pid.id, nhs, org.id,
                                                      CATEGORY_CODES[i % len(CATEGORY_CODES)]))
    return f"Organization/{org.id}"


async def timed(run: Callable[[], Any]) -> tuple[str, float]:
    times, status = [], "200"
    for _ in range(3):
        start = time.perf_counter()
        try:
            await run()
        except FhirError as exc:
            status = f"{exc.status} {exc.issues[0].code}"
        times.append((time.perf_counter() - start) * 1000)
    return status, statistics.median(times)


async def measure(label: str, url: str, data_dir: Path, patients: int) -> None:
    settings = Settings(data_dir=data_dir, database_url=url, dispatcher_in_process=False,
                        _env_file=None)  # type: ignore[call-arg]
    ctx = AppContext.from_settings(settings, interceptors=resource_rules())
    await upgrade(ctx.engine)
    try:
        org = await seed(ctx, patients)
        if not settings.is_sqlite:  # planner statistics, as autovacuum keeps them on a live server
            async with ctx.engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.exec_driver_sql("ANALYZE")
        limits = settings.search_limits
        for name, rtype, query in shapes(limits.max_criteria, limits.max_values, org):
            async def search(rtype: str = rtype, query: Query = query) -> None:
                async with ctx.unit_of_work() as svc:
                    await svc.search(rtype, query)
            status, ms = await timed(search)
            print(f"{label:10} {name:40} {status:18} {ms:9.1f} ms", flush=True)
        for kind, n in (("batch", settings.bundle_max_entries), ("transaction", settings.bundle_max_entries),
                        ("transaction", settings.bundle_max_entries // 4)):
            costliest = "Patient?" + "&".join(f"name=a{i}" for i in range(limits.max_criteria))
            entries = ([{"request": {"method": "GET", "url": costliest}}] * (n // limits.max_criteria)
                       if kind == "batch"
                       else [{"resource": {"resourceType": "Patient", "name": [{"family": f"B{i}"}]},
                              "request": {"method": "POST", "url": "Patient"}} for i in range(n)])
            bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}

            async def send(bundle: dict[str, Any] = bundle) -> None:
                async with ctx.unit_of_work() as svc:
                    await process(svc, bundle, Preferences())
            status, ms = await timed(send)
            print(f"{label:10} {f'largest allowed {kind} ({len(entries)})':40} {status:18} {ms:9.1f} ms", flush=True)
    finally:
        await ctx.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--db", choices=("sqlite", "pg", "both"), default="both")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="safeflag-bounds-"))
    if args.db in ("sqlite", "both"):
        await measure("SQLite", f"sqlite+aiosqlite:///{tmp / 'b.db'}", tmp, args.patients)
    if args.db in ("pg", "both"):
        cluster: PgCluster = start_cluster()
        try:
            cluster.psql("CREATE DATABASE bounds")
            await measure("PostgreSQL", cluster.url("bounds"), tmp, args.patients)
        finally:
            cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
