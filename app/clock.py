"""The server's clock: the system's, or, for test runs only, one that starts at a fixed instant.

Everything the server dates (versions, due times, ages, leases) comes from the context's clock. A test
that starts a real server (`safeflag serve`) sets `SAFEFLAG_TEST_CLOCK=<ISO instant>`: the clock then
starts there when the process starts and runs in real time (leases, retries and timeouts still pass),
so no outcome depends on the day the tests run. Several processes on one database (API processes and
dispatchers, a restart) must agree on the time, so `<ISO instant>@<Unix time>` names the real moment
at which the clock reads that instant: every process given the same value shows the same time. It is a test switch, never a service one: it is
refused unless `SAFEFLAG_TESTING` is on too, and `safeflag serve` refuses it on a bind that is not
loopback, as it refuses the development sign-in.
"""

from __future__ import annotations

import ipaddress
import math
import time
from datetime import UTC, datetime, timedelta

from app.config import Settings


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class StartedClock:
    """Real time from a fixed instant: `start` at the Unix time `at` (default: when this object is made),
    then as time passes."""

    def __init__(self, start: datetime, at: float | None = None) -> None:
        self.start = start
        self.at = at
        self.origin = time.monotonic()

    def now(self) -> datetime:
        if self.at is not None:
            return self.start + timedelta(seconds=time.time() - self.at)
        return self.start + timedelta(seconds=time.monotonic() - self.origin)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _parse(raw: str) -> tuple[datetime, float | None] | None:
    """`<instant>` or `<instant>@<Unix time>`: the instant (UTC) and the real moment it is read at."""
    instant, _, at = raw.partition("@")
    try:
        parsed = datetime.fromisoformat(instant)
        moment = float(at) if at else None
    except ValueError:
        return None
    if parsed.tzinfo is None or (moment is not None and not math.isfinite(moment)):
        return None
    return parsed.astimezone(UTC), moment


def refusal(settings: Settings, host: str | None = None) -> str | None:
    """Why a process must not start with this test clock, or None (also None without one). `host`: the
    bind of `safeflag serve` (None: a process that listens nowhere)."""
    if not settings.test_clock:
        return None
    if not settings.testing:
        return "refusing to start: SAFEFLAG_TEST_CLOCK is for test runs only and needs SAFEFLAG_TESTING=true"
    if host is not None and not is_loopback(host):
        return (f"refusing to start: SAFEFLAG_TEST_CLOCK is allowed only on a loopback address, "
                f"not {host or 'all addresses'}")
    if _parse(settings.test_clock) is None:
        return (f"refusing to start: SAFEFLAG_TEST_CLOCK must be an ISO 8601 instant with its offset, optionally "
                f"@ the Unix time it is read at (e.g. 2026-03-04T10:00:00Z@1772618400), not '{settings.test_clock}'")
    return None


def clock_for(settings: Settings) -> SystemClock | StartedClock:
    """The clock this process runs on; a test clock that `refusal` refuses raises instead."""
    if not settings.test_clock:
        return SystemClock()
    refused = refusal(settings)
    if refused:
        raise RuntimeError(refused)
    parsed = _parse(settings.test_clock)
    assert parsed is not None
    return StartedClock(*parsed)
