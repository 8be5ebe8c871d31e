"""The test clock (app/clock.py): honoured only with the test switch on, and then, for a server, only on
a loopback bind; it starts at its instant and runs in real time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from app.clock import StartedClock, SystemClock, clock_for, refusal
from app.config import Settings

INSTANT = "2026-03-04T10:00:00Z"


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg,arg-type]


@pytest.mark.parametrize(("kw", "host", "refused"), [
    ({}, "0.0.0.0", None),  # no test clock: nothing to refuse
    ({"testing": True}, "0.0.0.0", None),
    ({"test_clock": INSTANT}, "127.0.0.1",
     "refusing to start: SAFEFLAG_TEST_CLOCK is for test runs only and needs SAFEFLAG_TESTING=true"),
    ({"test_clock": INSTANT}, None,
     "refusing to start: SAFEFLAG_TEST_CLOCK is for test runs only and needs SAFEFLAG_TESTING=true"),
    ({"test_clock": INSTANT, "testing": True}, "127.0.0.1", None),
    ({"test_clock": INSTANT, "testing": True}, "::1", None),
    ({"test_clock": INSTANT, "testing": True}, "localhost", None),
    ({"test_clock": INSTANT, "testing": True}, None, None),  # `safeflag dispatcher` listens nowhere
    ({"test_clock": INSTANT, "testing": True}, "0.0.0.0",
     "refusing to start: SAFEFLAG_TEST_CLOCK is allowed only on a loopback address, not 0.0.0.0"),
    ({"test_clock": INSTANT, "testing": True}, "",
     "refusing to start: SAFEFLAG_TEST_CLOCK is allowed only on a loopback address, not all addresses"),
    ({"test_clock": INSTANT, "testing": True}, "192.0.2.10",
     "refusing to start: SAFEFLAG_TEST_CLOCK is allowed only on a loopback address, not 192.0.2.10"),
    ({"test_clock": "2026-03-04", "testing": True}, "127.0.0.1",
     "refusing to start: SAFEFLAG_TEST_CLOCK must be an ISO 8601 instant with its offset, optionally "
     "@ the Unix time it is read at (e.g. 2026-03-04T10:00:00Z@1772618400), not '2026-03-04'"),
    ({"test_clock": "2026-03-04T10:00:00", "testing": True}, "127.0.0.1",
     "refusing to start: SAFEFLAG_TEST_CLOCK must be an ISO 8601 instant with its offset, optionally "
     "@ the Unix time it is read at (e.g. 2026-03-04T10:00:00Z@1772618400), not '2026-03-04T10:00:00'"),
    ({"test_clock": INSTANT + "@soon", "testing": True}, "127.0.0.1",
     "refusing to start: SAFEFLAG_TEST_CLOCK must be an ISO 8601 instant with its offset, optionally "
     "@ the Unix time it is read at (e.g. 2026-03-04T10:00:00Z@1772618400), not '2026-03-04T10:00:00Z@soon'"),
    ({"test_clock": INSTANT + "@1772618400.5", "testing": True}, "127.0.0.1", None),
    ({"test_clock": "yesterday", "testing": True}, "127.0.0.1",
     "refusing to start: SAFEFLAG_TEST_CLOCK must be an ISO 8601 instant with its offset, optionally "
     "@ the Unix time it is read at (e.g. 2026-03-04T10:00:00Z@1772618400), not 'yesterday'"),
])
def test_the_test_clock_is_refused_outside_a_loopback_test_run(kw: dict[str, object], host: str | None,
                                                               refused: str | None) -> None:
    assert refusal(settings(**kw), host) == refused


def test_the_system_clock_without_a_test_clock() -> None:
    assert type(clock_for(settings())) is SystemClock
    assert type(clock_for(settings(testing=True))) is SystemClock


def test_a_test_clock_starts_at_its_instant_in_utc_and_runs_forward() -> None:
    clock = clock_for(settings(testing=True, test_clock="2026-03-04T11:00:00+01:00"))
    assert isinstance(clock, StartedClock)
    assert clock.start == datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    first = clock.now()
    assert clock.start <= first <= clock.now()
    assert (first - clock.start).total_seconds() < 3600  # real time since it was made, not the date today


def test_processes_given_one_anchored_test_clock_agree_on_the_time() -> None:
    """`<instant>@<Unix time>`: the instant is read at that real moment, by every process given it, however
    long after one another they start."""
    anchor = time.time() - 90.0  # the clock read 10:00 a minute and a half ago
    value = f"{INSTANT}@{anchor}"
    first = clock_for(settings(testing=True, test_clock=value))
    later = clock_for(settings(testing=True, test_clock=value))
    a, b = first.now(), later.now()
    start = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    assert timedelta(seconds=90) <= a - start and a <= b  # not restarted at 10:00 by the second process
    assert (b - a).total_seconds() < 60


def test_a_refused_test_clock_is_never_used() -> None:
    with pytest.raises(RuntimeError, match="needs SAFEFLAG_TESTING=true"):
        clock_for(settings(test_clock=INSTANT))
