"""FHIR date/dateTime/instant values as half-open UTC ranges [low, high).

A value's range is its implicit precision (https://hl7.org/fhir/R4/search.html#date): `2024` covers
the year, `2024-05-06T10:00:00Z` the second. Open ends of a Period become MIN/MAX.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

MIN = datetime(1, 1, 1)
MAX = datetime(9999, 12, 31, 23, 59, 59)

_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _add_months(ts: datetime, months: int) -> datetime:
    y, m = divmod(ts.month - 1 + months, 12)
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
            return low, low.replace(year=low.year + 1) if low.year < 9999 else MAX
        if g["d"] is None:
            low = datetime(int(g["y"]), int(g["m"]), 1)
            return low, _add_months(low, 1) if low.year < 9999 or low.month < 12 else MAX
        if g["H"] is None:
            low = datetime(int(g["y"]), int(g["m"]), int(g["d"]))
            return low, low + timedelta(days=1)
        frac = g["f"] or ""
        micro = int((frac + "000000")[:6]) if frac else 0
        low = datetime(
            int(g["y"]), int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"] or 0), micro
        )
        if g["S"] is None:
            step = timedelta(minutes=1)
        elif not frac:
            step = timedelta(seconds=1)
        else:
            step = timedelta(microseconds=10 ** (6 - min(len(frac), 6)))
        tz = g["tz"]
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
            low = low - sign * offset
        elif tz is None and g["H"] is not None:
            # a time without zone: take it as UTC, as the server has no other clue
            pass
        return low, low + step
    except (ValueError, OverflowError):
        return None


def to_naive_utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        return ts
    return ts.astimezone(timezone.utc).replace(tzinfo=None)
