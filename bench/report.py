"""Results of bench/run.py: medians, ratios to the ceiling, the markdown table, the JSON and CSV files.

Two ratios are reported (always a ratio: absolute figures move +-50% between runs):
throughput (SafeFlag req/s / ceiling req/s under the same generator) and CPU per request (server
plus database CPU of the ceiling / of SafeFlag), which moves far less with the machine's other load.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import ROOT

RESULTS = ROOT / "bench" / "results"
ORDER = ("create", "read", "search")
LABEL = {"create": "create Flag", "read": "read Flag", "search": "CP-IS search (+_include)"}
CREATE_TARGET = 0.5
GENERATOR_BOUND = 0.5  # generator CPU per request / server CPU per request


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds per (workload, generator, target), and SafeFlag's ratios to the ceiling:
    by throughput, and by CPU per request (server + database), which moves far less with the load."""
    out = []
    keys = sorted({(r["workload"], r["generator"]) for r in rows}, key=lambda k: (ORDER.index(k[0]), k[1]))
    fields = (
        "throughput",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "cpu_ms_per_req",
        "generator_ms_per_req",
        "other_load_cores",
        "errors",
    )
    for workload, gen in keys:
        med = {}
        for target in ("safeflag", "ceiling"):
            picked = [
                r for r in rows if (r["workload"], r["generator"], r["target"]) == (workload, gen, target)
            ]
            med[target] = {
                f: statistics.median([r[f] for r in picked if r.get(f) is not None] or [0]) for f in fields
            }
        sf, ce = med["safeflag"], med["ceiling"]
        out.append(
            {
                "workload": workload,
                "generator": gen,
                "safeflag": sf,
                "ceiling": ce,
                "ratio": round(sf["throughput"] / ce["throughput"], 3) if ce["throughput"] else None,
                "cpu_ratio": round(ce["cpu_ms_per_req"] / sf["cpu_ms_per_req"], 3)
                if sf["cpu_ms_per_req"]
                else None,
                # a generator spending per request half of what the ceiling does shares its bottleneck on 2 cores
                "ceiling_generator_bound": ce["generator_ms_per_req"]
                >= GENERATOR_BOUND * ce["cpu_ms_per_req"],
            }
        )
    return out


def table(db: str, summary: list[dict[str, Any]]) -> str:
    head = (
        "| workload | generator | SafeFlag req/s | p50 ms | p95 ms | p99 ms | ceiling req/s | ratio "
        "| CPU ms/req SafeFlag / ceiling | CPU ratio |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [f"**{db}**", "", head]
    for s in summary:
        sf, ce = s["safeflag"], s["ceiling"]
        bound = " (generator-bound)" if s["ceiling_generator_bound"] else ""
        lines.append(
            f"| {LABEL[s['workload']]} | {s['generator']} | {sf['throughput']:.0f} | {sf['p50_ms']:.1f} | "
            f"{sf['p95_ms']:.1f} | {sf['p99_ms']:.1f} | {ce['throughput']:.0f}{bound} | **{s['ratio']:.2f}** | "
            f"{sf['cpu_ms_per_req']:.2f} / {ce['cpu_ms_per_req']:.2f} | {s['cpu_ratio']:.2f} |"
        )
    lines.append("")
    for s in summary:
        if s["workload"] == "create":
            met = "met" if s["ratio"] is not None and s["ratio"] >= CREATE_TARGET else "NOT met"
            if s["ceiling_generator_bound"]:
                met = "inconclusive (the generator, not the ceiling, was the limit)"
            lines.append(
                f"Target create Flag >= {CREATE_TARGET:.0%} of ceiling, {s['generator']}: "
                f"{s['ratio']:.0%} -> {met}; by CPU per request: {s['cpu_ratio']:.0%}"
            )
    return "\n".join(lines)


def write_results(stamp: str, result: dict[str, Any], info: dict[str, Any], args: argparse.Namespace) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{stamp}-{result['db']}{'-quick' if args.quick else ''}"
    settings = {
        k: getattr(args, k) for k in ("workers", "concurrency", "duration", "warmup", "rounds", "quick")
    }
    doc = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "settings": settings,
        **result,
        "summary": summarise(result["rows"]),
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    fields = [
        "db",
        "workload",
        "generator",
        "target",
        "round",
        "throughput",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "requests",
        "ok",
        "errors",
        "duration_s",
        "concurrency",
        "server_cpu_ms_per_req",
        "db_cpu_ms_per_req",
        "cpu_ms_per_req",
        "generator_ms_per_req",
        "other_load_cores",
        "loadavg_before",
        "loadavg_after",
    ]
    with (RESULTS / f"{name}.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in result["rows"]:
            w.writerow(
                {
                    **r,
                    "loadavg_before": " ".join(r["loadavg_before"]),
                    "loadavg_after": " ".join(r["loadavg_after"]),
                }
            )
    return RESULTS / f"{name}.json"
