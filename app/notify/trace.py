"""A trace of each notice's way through the dispatcher, for the notification benchmark only.

With `SAFEFLAG_NOTIFY_TRACE_DIR` set, each dispatcher appends one JSON line per stage to
`<dir>/notify-<pid>.jsonl`: when a round was woken and by what (a commit's signal or the poll
interval), when its matching committed and which outbox rows it consumed, when a delivery had its
events loaded under its lease, when the subscriber answered and when the outcome was committed. Times
are `time.monotonic()`, one clock for every process on the host, so `bench/notify_latency.py --trace`
lines the stages up with its own request and arrival times and says which stage the slow notices
spent their time in. Unset (the default and the only setting for a service) it writes and costs
nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

import orjson

_dir: Path | None = None
_out: IO[bytes] | None = None
_pid = 0


def configure(directory: str) -> None:
    """Trace into `directory` (empty: no trace)."""
    global _dir, _out
    new = Path(directory) if directory else None
    if new != _dir and _out is not None:
        _out.close()
        _out = None
    _dir = new


def on() -> bool:
    return _dir is not None


def mark(stage: str, **fields: Any) -> None:
    """One line for `stage` now (monotonic), with `fields`; nothing when the trace is off."""
    global _out, _pid
    if _dir is None:
        return
    if _out is None or _pid != os.getpid():  # a forked worker writes its own file
        _pid = os.getpid()
        _dir.mkdir(parents=True, exist_ok=True)
        _out = (_dir / f"notify-{_pid}.jsonl").open("ab")
    _out.write(orjson.dumps({"stage": stage, "t": time.monotonic(), **fields}) + b"\n")
    _out.flush()
