"""What durable SQLite commits cost: SafeFlag on SQLite with its default `synchronous=FULL` (every
answered commit synced to disk) against `SAFEFLAG_SQLITE_MAY_LOSE_COMMITS_ON_POWER_LOSS=true`
(`synchronous=NORMAL`: no fsync at commit), in the same run on the same machine.

- create Flag: `safeflag serve --no-dispatcher` per setting, each on its own SQLite file seeded alike
  (bench/seed.py), the Python load generator (bench/loadgen.py, 16 connections) and wrk when
  installed, `--rounds` rounds with the order of the two settings alternating (medians reported).
- notification latency: bench/notify_latency.py for each setting, `--sequential` attendances one
  after another, then `--rate` attendances/s for `--seconds`.

Results: bench/results/<date>-durability-sqlite.json and a markdown table.

    python -m bench.durability                       # about 5 minutes
    python -m bench.durability --duration 5 --rounds 1 --seconds 10 --sequential 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import notify_latency
from bench.procs import ROOT, free_port, machine_info, safeflag_server
from bench.run import Bench, mint_token
from bench.seed import Sizes, seed_safeflag

RESULTS = ROOT / "bench" / "results"
SETTINGS: dict[str, dict[str, str]] = {
    "durable (default)": {},
    "may lose commits on power loss": {"SAFEFLAG_SQLITE_MAY_LOSE_COMMITS_ON_POWER_LOSS": "true"},
}


def create_flag(args: argparse.Namespace, gens: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="safeflag-bench-durability-"))
    servers, seeds, files = {}, {}, {}
    try:
        for i, (name, env) in enumerate(SETTINGS.items()):
            data = work / f"s{i}"
            data.mkdir()
            srv = safeflag_server(free_port(), 1, data, f"sqlite+aiosqlite:///{data}/safeflag.db", env)
            srv.name = name
            srv.start()
            servers[name] = srv
            token = mint_token(srv.env)
            seeds[name] = asyncio.run(seed_safeflag(srv.base, Sizes(search_patients=20, create_patients=600), token))[0]
            files[name] = data / "seed.json"
            files[name].write_text(json.dumps(seeds[name]))
        bench = Bench(args, work, token, None)  # one issuer per data dir: the token is set per server below
        for rnd in range(args.rounds):
            order = list(SETTINGS) if rnd % 2 == 0 else list(SETTINGS)[::-1]
            for gen in gens:
                for name in order:
                    bench.token = mint_token(servers[name].env)
                    row = bench.measure(servers[name], files[name], seeds[name], "create", gen)
                    rows.append({"setting": name, "round": rnd, **row})
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


async def notifications(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for load in ({"sequential": args.sequential}, {"sequential": 0}):
        for name, env in SETTINGS.items():
            ns = argparse.Namespace(rate=args.rate, seconds=args.seconds, children=50, workers=1, env=env, **load)
            result = await notify_latency.run_db("sqlite", ns, None)
            print(f"  notify {name}: {result['load']}: {result['latency_ms']}, lost {result['lost']}", flush=True)
            out.append({"setting": name, **result})
    return out


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 1)


def table(creates: list[dict[str, Any]], notices: list[dict[str, Any]]) -> str:
    head = ("| SQLite setting | create Flag req/s | p50 ms | p99 ms | CPU ms/create | notices: sequential p50 / p99 ms "
            "| at the rate: p50 / p99 ms | lost |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for name in SETTINGS:
        rows = [r for r in creates if r["setting"] == name and r["generator"] == "python"] or \
            [r for r in creates if r["setting"] == name]
        seq, rate = (next(n for n in notices if n["setting"] == name and (n["rate_per_s"] is None) == s)
                     for s in (True, False))
        lines.append(
            f"| {name} | {_median(rows, 'throughput')} | {_median(rows, 'p50_ms')} | {_median(rows, 'p99_ms')} | "
            f"{_median(rows, 'cpu_ms_per_req')} | {seq['latency_ms'].get('p50')} / {seq['latency_ms'].get('p99')} | "
            f"{rate['latency_ms'].get('p50')} / {rate['latency_ms'].get('p99')} | {seq['lost'] + rate['lost']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds per create Flag measurement")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--sequential", type=int, default=100, help="attendances one after another")
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of attendances at the rate")
    args = p.parse_args()
    gens = ["python", "wrk"] if shutil.which("wrk") else ["python"]
    info = machine_info(None)
    t0 = time.time()
    creates = create_flag(args, gens)
    notices = asyncio.run(notifications(args))
    result = {"machine": info, "args": vars(args), "seconds": round(time.time() - t0),
              "create_flag": creates, "notifications": notices}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{datetime.now(UTC):%Y-%m-%d}-durability-sqlite.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(creates, notices))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
