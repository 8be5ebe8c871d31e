"""Where each notice's time went: the server's stage trace (app/notify/trace.py) lined up with the
generator's request and arrival times (`python -m bench.notify_latency --trace`).

For every attendance: request (start -> 201), commit -> matched (the 201 to the commit of the
dispatcher round that matched its Communication: waiting to be woken, then matching), matched ->
leased (until a dispatcher took the subscription's lease for a delivery that carried it: a delivery
already under way for the subscription, contention between dispatchers), leased -> loaded (the
delivery's read of its events), loaded -> arrived (bundle, HTTP to the receiver). Each stage is given
as its median over all notices and over the slowest 2 %, with what woke the rounds that matched the
slow ones (a commit's signal, the poll interval, a round that had more to do; "before the 201" when the
round began before the attendance's answer came back). The server's monotonic
times are moved to the generator's wall clock by the offset between the two, read once here (both
clocks are this host's).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

SEGMENTS = ("request", "commit_to_matched", "matched_to_leased", "leased_to_loaded", "loaded_to_arrived")


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2], 1) if ordered else None


def _read(directory: Path, offset: float) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for path in sorted(directory.glob("notify-*.jsonl")):
        pid = int(path.stem.split("-")[1])
        for line in path.read_bytes().splitlines():
            mark = orjson.loads(line)
            mark["t"] += offset
            out.append((pid, mark))
    out.sort(key=lambda m: m[1]["t"])
    return out


def stages(directory: Path, started: dict[str, float], answered: dict[str, float],
           arrived: dict[str, list[float]]) -> dict[str, Any]:
    offset = time.time() - time.monotonic()
    marks = _read(directory, offset)
    last_round: dict[int, dict[str, Any]] = {}
    last_lease: dict[tuple[int, str], float] = {}
    matched: dict[str, tuple[float, str, float]] = {}  # Communication id -> (matched at, what woke its round, when)
    loaded: dict[str, tuple[float, float | None]] = {}  # Encounter id -> (loaded at, leased at)
    encounter_of: dict[str, str] = {}
    for pid, m in marks:
        stage = m["stage"]
        if stage == "round":
            last_round[pid] = m
        elif stage == "matched":
            current = last_round.get(pid, {})
            for rtype, rid in m["rows"]:
                if rtype == "Communication":
                    matched.setdefault(rid, (m["t"], current.get("by", "?"), current.get("t", 0.0)))
        elif stage == "leased":
            for sub in m["subs"]:
                last_lease[(pid, sub)] = m["t"]
        elif stage == "loaded":
            for focus, context in m["events"]:
                for ref in context:
                    if ref.startswith("Encounter/"):
                        eid = ref.split("/", 1)[1]
                        encounter_of[focus] = eid
                        loaded.setdefault(eid, (m["t"], last_lease.get((pid, m["sub"]))))
    by_encounter = {eid: matched[c] for c, eid in encounter_of.items() if c in matched}
    rows = []
    for eid, t0 in started.items():
        if eid not in arrived or eid not in loaded or eid not in by_encounter or eid not in answered:
            continue
        t_matched, by, t_round = by_encounter[eid]
        if t_round < answered[eid]:  # the round was woken before the 201 came back (for this commit or not)
            by += ", before the 201"
        t_loaded, t_leased = loaded[eid]
        t_leased = t_leased if t_leased is not None else t_loaded
        rows.append({
            "total": (min(arrived[eid]) - t0) * 1000,
            "request": (answered[eid] - t0) * 1000,
            "commit_to_matched": (t_matched - answered[eid]) * 1000,
            "matched_to_leased": (t_leased - t_matched) * 1000,
            "leased_to_loaded": (t_loaded - t_leased) * 1000,
            "loaded_to_arrived": (min(arrived[eid]) - t_loaded) * 1000,
            "woken_by": by,
        })
    rows.sort(key=lambda r: r["total"])
    slow = rows[-max(1, len(rows) // 50):] if rows else []

    def summary(part: list[dict[str, Any]]) -> dict[str, Any]:
        woken: dict[str, int] = {}
        for r in part:
            woken[r["woken_by"]] = woken.get(r["woken_by"], 0) + 1
        return {"notices": len(part), "total_ms": _median([r["total"] for r in part]),
                **{f"{s}_ms": _median([r[s] for r in part]) for s in SEGMENTS}, "matched_in_rounds_woken_by": woken}

    counts: dict[str, Any] = {"processes": len({pid for pid, _ in marks})}
    for _pid, m in marks:
        key = f"rounds_by_{m['by']}" if m["stage"] == "round" else m["stage"]
        counts[key] = counts.get(key, 0) + 1
    bundles = [len(m["events"]) for _pid, m in marks if m["stage"] == "loaded"]
    counts["events_per_bundle"] = round(sum(bundles) / len(bundles), 2) if bundles else None
    return {"counts": counts, "all_median": summary(rows), "slowest_2pct_median": summary(slow),
            "slowest": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()} for r in rows[-5:]]}
