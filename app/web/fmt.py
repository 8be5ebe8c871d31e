"""How the pages write what they show: dates and times in UK form on the Europe/London clock (whatever
the server's time zone), ages in years and months, "3 hours ago", and NHS numbers in the 3-3-4 groups
staff read them in, masked (`*** *** 1234`) where a list shows many children at once.

`readable` turns a notice's stored text (written for systems: ISO instants, `Organization/<id>`
references, `(system|code)` and `(Flag/<id>)` asides) into what a person reads: UK times, names where the
page could read the record, else what kind of record it is ("a practitioner"), never a bare reference.

Pure functions of their inputs (the clock is passed in), so the pages are testable at fixed instants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from app.fhir.search.dates import parse_range
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.safeguarding.tasks import LONDON

CACHED = 4096  # formatted instants kept: a few lists' worth of notices (each has three)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def instant(value: Any) -> datetime | None:
    """A FHIR dateTime/instant -> an aware UTC datetime (its start), None when absent or unreadable."""
    return _instant(value) if isinstance(value, str) and value else None


@lru_cache(maxsize=CACHED)
def _instant(value: str) -> datetime | None:
    """`instant` of a string. A full date-time (every notice's) is read by `datetime.fromisoformat`,
    several times faster than the search's range parser, which reads the partial forms (`2026`,
    `2026-01`). Cached: a list shows the same notices' times at every view."""
    if len(value) > 10 and value[10] == "T":
        try:
            start = datetime.fromisoformat(value)
        except ValueError:
            return None
        return start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    found = parse_range(value)
    if found is None:
        return None
    start = found[0]
    return start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)


def uk_datetime(value: datetime | str | None) -> str:
    """`14 March 2026, 09:05 GMT` (BST in summer); "" when unknown."""
    when = instant(value) if isinstance(value, str) or value is None else value
    return "" if when is None else _uk(when if when.tzinfo else when.replace(tzinfo=UTC))


@lru_cache(maxsize=CACHED)
def _uk(when: datetime) -> str:
    """`uk_datetime` of an aware datetime (cached as `_instant` is)."""
    local = when.astimezone(LONDON)
    return f"{local.day} {MONTHS[local.month - 1]} {local.year}, {local.hour:02d}:{local.minute:02d} {local.tzname()}"


_INSTANT = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})")
_TYPES = "|".join(sorted(SUPPORTED_TYPES, key=len, reverse=True))
_ID = "[A-Za-z0-9.-]{0,63}[A-Za-z0-9-]"  # a FHIR id, less a full stop that ends the sentence
_REFERENCE = re.compile(rf"\b(?:{_TYPES})/{_ID}")
_ASIDE = re.compile(rf" \((?:[a-z]+:[^|()\s]+\|[^()\s]+|(?:{_TYPES})/{_ID})\)")
KINDS = {"Organization": "an organisation", "Practitioner": "a practitioner", "PractitionerRole": "a practitioner",
         "Patient": "a child", "CareTeam": "a care team", "RelatedPerson": "a relative"}


ROUTES = {"care-team": "the child's care team", "managing-organization": "the child's 0-19 service",
          "duty-team": "the duty team", "ed-safeguarding-lead": "the ED's safeguarding lead",
          "unrouted": "nobody: unrouted"}
_ROUTE = re.compile(r"\(routed via ([a-z-]+)\)")


def readable(text: str, names: Mapping[str, str]) -> str:
    """Stored notice text as a person reads it: `(system|code)` and `(Flag/<id>)` asides dropped, the
    route in words, instants in UK form, each reference replaced by the name in `names` (the records the
    page read), else by its kind."""
    parts = _readable_parts(text)
    if len(parts) == 1:
        return parts[0]
    return "".join(part if i % 2 == 0 else names.get(part) or KINDS.get(part.split("/")[0], "a record")
                   for i, part in enumerate(parts))


@lru_cache(maxsize=CACHED)
def _readable_parts(text: str) -> tuple[str, ...]:
    """`text` with its asides, route and instants rewritten (what does not depend on the reader), split
    around its references: text, reference, text, ..., text. Cached, as `_instant` is: a page shows the
    same notices' texts at every view, and only the names of their references are the reader's."""
    text = _ROUTE.sub(lambda m: f"(routed to {ROUTES[m.group(1)]})" if m.group(1) in ROUTES else m.group(0),
                      _ASIDE.sub("", text))
    text = _INSTANT.sub(lambda m: uk_datetime(m.group(0)) or m.group(0), text)
    parts: list[str] = []
    start = 0
    for ref in _REFERENCE.finditer(text):
        parts += [text[start:ref.start()], ref.group(0)]
        start = ref.end()
    return (*parts, text[start:])


def uk_date(value: str | None) -> str:
    """A FHIR date (`2024-01-15`) -> `15 January 2024`; partial dates as far as they go."""
    if not value:
        return ""
    parts = value[:10].split("-")
    try:
        if len(parts) == 3:
            return f"{int(parts[2])} {MONTHS[int(parts[1]) - 1]} {parts[0]}"
        if len(parts) == 2:
            return f"{MONTHS[int(parts[1]) - 1]} {parts[0]}"
    except (ValueError, IndexError):
        return value
    return parts[0]


def age(birth: str | None, now: datetime) -> str:
    """`2 years`, `7 months`, `3 weeks`, on the London calendar day of `now`; "" when unknown."""
    if not birth or len(birth) < 10:
        return ""
    try:
        born = date.fromisoformat(birth[:10])
    except ValueError:
        return ""
    today = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(LONDON).date()
    months = (today.year - born.year) * 12 + today.month - born.month - (today.day < born.day)
    if months >= 24:
        return f"{months // 12} years"
    if months >= 1:
        return f"{months} month{'s' * (months != 1)}"
    weeks = max((today - born).days // 7, 0)
    return f"{weeks} week{'s' * (weeks != 1)}"


def ago(value: datetime | None, now: datetime) -> str:
    """`just now`, `5 minutes ago`, `3 hours ago`, `2 days ago`."""
    if value is None:
        return ""
    seconds = int((now - value).total_seconds())
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' * (n != 1)} ago"
    return "just now"  # pragma: no cover - the loop always returns


def nhs_number(value: str | None, *, masked: bool) -> str:
    """`999 000 0166`, or `*** *** 0166` masked (the last four digits tell children apart on a list)."""
    if not value:
        return ""
    if len(value) != 10:
        return "*" * len(value) if masked else value
    return f"*** *** {value[6:]}" if masked else f"{value[:3]} {value[3:6]} {value[6:]}"
