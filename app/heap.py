"""Short full garbage collections in a long-running process: what stays alive is frozen once it is known.

CPython's cyclic garbage collector walks every tracked object of the generations it collects, and a
full (generation 2) collection walks all the long-lived ones (https://docs.python.org/3/library/gc.html).
A server makes tens of thousands of long-lived objects after it started: modules imported on first use,
compiled SQL statements and templates, caches. Measured on the 2-vCPU benchmark machine with 200 open
notices on the health visitor's list: a full collection every ninth or tenth view of it, walking some
75,000 such objects, took 22-40 ms, and landed in the middle of a page (the page's p95 was 62 ms for
a p50 of 31 ms); with them frozen it took about 3 ms and the p95 was 34 ms.

`gc.freeze()` moves every tracked object into a permanent generation that collections no longer walk
(https://docs.python.org/3/library/gc.html#gc.freeze). Freezing once at start (app/prefork.py does so
before forking its workers) misses everything made later, so a `HeapKeeper` watches the collections:

- after a full collection that took longer than `slow_ms`, it is due;
- when due, the next time its task runs (between requests' steps, on the event loop), it unfreezes
  what earlier freezes held, runs one full collection (cyclic garbage is freed, never frozen), and
  freezes what survives; at most once per `interval_s`, so a long pause never repeats quickly.

Once what lives long has been frozen, full collections walk only what is young and are short again,
so the keeper falls quiet. An object frozen while a request was under way is still freed by its
reference count when the request ends; one in a reference cycle waits for the next freeze, which
collects it first. The freeze's own pause (one full collection, about 100 ms here) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("safeflag.heap")

SLOW_MS = 10.0  # a full collection longer than this makes a freeze due
INTERVAL_S = 10.0  # at most one freeze in this many seconds
POLL_S = 1.0  # how often the keeper's task looks whether a freeze is due


@dataclass(frozen=True)
class Freeze:
    """What one freeze did: the objects it froze, the garbage its collection freed, its pause."""

    frozen: int
    collected: int
    ms: float


class HeapKeeper:
    """Freezes the long-lived heap after slow full collections (module docstring). `monotonic` (seconds)
    paces the freezes; `on_freeze` is told of each (metrics)."""

    def __init__(self, *, slow_ms: float = SLOW_MS, interval_s: float = INTERVAL_S,
                 monotonic: Callable[[], float] = time.monotonic,
                 on_freeze: Callable[[Freeze], None] | None = None) -> None:
        self.slow_ms = slow_ms
        self.interval_s = interval_s
        self.monotonic = monotonic
        self.on_freeze = on_freeze
        self.due = False
        self.last: float | None = None  # when the last freeze ran (`monotonic`)
        self._started: float | None = None  # perf_counter at the start of the collection under way

    def observe(self, phase: str, info: dict[str, Any]) -> None:
        """The `gc.callbacks` entry: times each full collection; a slow one makes a freeze due."""
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            if (time.perf_counter() - self._started) * 1000 > self.slow_ms:
                self.due = True
            self._started = None

    def tend(self) -> Freeze | None:
        """Freeze now if due and the last freeze is at least `interval_s` ago; what it did, else None."""
        now = self.monotonic()
        if not self.due or (self.last is not None and now - self.last < self.interval_s):
            return None
        began = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        done = Freeze(gc.get_freeze_count(), collected, round((time.perf_counter() - began) * 1000, 1))
        self.due, self.last = False, now
        logger.info("heap frozen", extra={"frozen": done.frozen, "collected": done.collected, "pause_ms": done.ms})
        if self.on_freeze is not None:
            self.on_freeze(done)
        return done

    def install(self) -> None:
        """Start watching the collections."""
        if self.observe not in gc.callbacks:
            gc.callbacks.append(self.observe)

    def uninstall(self) -> None:
        """Stop watching; what this keeper froze goes back to the collector (a process that goes on, as
        a test run does, has its garbage collected as before)."""
        if self.observe in gc.callbacks:
            gc.callbacks.remove(self.observe)
        if self.last is not None:
            gc.unfreeze()

    async def run(self, stop: asyncio.Event, poll_s: float = POLL_S) -> None:
        """Installed until `stop`: look every `poll_s` whether a freeze is due, and run it."""
        self.install()
        try:
            while not stop.is_set():
                self.tend()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=poll_s)
        finally:
            self.uninstall()
