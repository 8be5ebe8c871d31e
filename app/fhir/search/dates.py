"""FHIR date/dateTime/instant values as half-open UTC ranges [low, high), and the date prefixes.

A value's range is its implicit precision (https://hl7.org/fhir/R4/search.html#date): `2024` covers
the year, `2024-05-06T10:00:00Z` the second. Open ends of a Period become MIN/MAX.

`prefix_condition` states what each prefix means ONCE, over abstract comparison operators, so that
the SQL compiler (columns) and the subscription matcher (Python datetimes) cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

MIN = datetime(1, 1, 1)
MAX = datetime(9999, 12, 31, 23, 59, 59)

_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _shift(ts: datetime, delta: timedelta) -> datetime:
    """`ts + delta`, clamped to [MIN, MAX] instead of overflowing at the ends of the calendar."""
    try:
        return min(max(ts + delta, MIN), MAX)
    except OverflowError:
        return MAX if delta > timedelta(0) else MIN


def _add_months(ts: datetime, months: int) -> datetime:
    y, m = divmod(ts.month - 1 + months, 12)
    if ts.year + y > 9999:
        return MAX
    return ts.replace(year=ts.year + y, month=m + 1)


def parse_range(text: str) -> tuple[datetime, datetime] | None:
    """Parse a FHIR date/dateTime/instant into a naive-UTC [low, high) range; None if malformed."""
    m = _RE.match(text.strip())
    if not m:
        return None
    g = m.groupdict()
    try:
        if g["m"] is None:
            low = datetime(int(g["y"]), 1, 1)
            return low, _add_months(low, 12)
        if g["d"] is None:
            low = datetime(int(g["y"]), int(g["m"]), 1)
            return low, _add_months(low, 1)
        if g["H"] is None:
            low = datetime(int(g["y"]), int(g["m"]), int(g["d"]))
            return low, _shift(low, timedelta(days=1))
        frac = g["f"] or ""
        micro = int((frac + "000000")[:6]) if frac else 0
        low = datetime(
            int(g["y"]), int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"] or 0), micro
        )
    except ValueError:
        return None
    if g["S"] is None:
        step = timedelta(minutes=1)
    elif not frac:
        step = timedelta(seconds=1)
    else:
        step = timedelta(microseconds=10 ** (6 - min(len(frac), 6)))
    tz = g["tz"]
    if tz and tz != "Z":
        hours, minutes = int(tz[1:3]), int(tz[4:6])
        if hours > 14 or minutes > 59:
            return None
        sign = 1 if tz[0] == "+" else -1
        low = _shift(low, -sign * timedelta(hours=hours, minutes=minutes))
    # a time without a zone is taken as UTC: the server has no better clue
    return low, _shift(low, step)


def approximate_slack(low: datetime, high: datetime) -> timedelta:
    """`ap` tolerance: 10% of the value's own precision, at least one day. R4 leaves "approximately"
    to the server (https://hl7.org/fhir/R4/search.html#prefix); a fixed rule keeps results stable."""
    return max(timedelta(days=1), (high - low) * 0.1)


class Ops:
    """The boolean combinators a prefix condition is built from (SQL or Python)."""

    def __init__(self, and_: Callable[..., Any], or_: Callable[..., Any], not_: Callable[[Any], Any]) -> None:
        self.and_, self.or_, self.not_ = and_, or_, not_


PY_OPS = Ops(lambda *xs: all(xs), lambda *xs: any(xs), lambda x: not x)


def prefix_condition(prefix: str, lo: Any, hi: Any, v_low: datetime, v_high: datetime, ops: Ops) -> Any:
    """Does a target range [lo, hi) satisfy `prefix` + search range [v_low, v_high)?

    https://hl7.org/fhir/R4/search.html#prefix: eq = the search range fully contains the target;
    gt/lt = the range above/below the search value overlaps the target; ge/le = gt/lt or eq;
    sa/eb = the target starts after / ends before the search range; ap = overlaps the widened range.
    """
    eq = ops.and_(lo >= v_low, hi <= v_high)
    if prefix == "eq":
        return eq
    if prefix == "ne":
        return ops.not_(eq)
    if prefix == "gt":
        return hi > v_high
    if prefix == "lt":
        return lo < v_low
    if prefix == "ge":
        return ops.or_(hi > v_high, eq)
    if prefix == "le":
        return ops.or_(lo < v_low, eq)
    if prefix == "sa":
        return lo >= v_high
    if prefix == "eb":
        return hi <= v_low
    slack = approximate_slack(v_low, v_high)
    return ops.and_(hi > _shift(v_low, -slack), lo < _shift(v_high, slack))


def instant_condition(prefix: str, t: Any, v_low: datetime, v_high: datetime, ops: Ops) -> Any:
    """The same prefixes for a point in time such as `meta.lastUpdated` (a zero-width target)."""
    inside = ops.and_(t >= v_low, t < v_high)
    if prefix == "eq":
        return inside
    if prefix == "ne":
        return ops.not_(inside)
    if prefix in ("gt", "sa"):
        return t >= v_high
    if prefix in ("lt", "eb"):
        return t < v_low
    if prefix == "ge":
        return t >= v_low
    if prefix == "le":
        return t < v_high
    slack = approximate_slack(v_low, v_high)
    return ops.and_(t >= _shift(v_low, -slack), t < _shift(v_high, slack))
