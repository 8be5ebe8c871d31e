"""Search values as sent in a query string, parsed per parameter type
(https://hl7.org/fhir/R4/search.html#ptypes, escaping: https://hl7.org/fhir/R4/search.html#escaping).

`a,b` is an OR of two values; `\\,` `\\|` `\\$` `\\\\` escape the separators. Values are clipped to
the widths of the index columns the way `extract.py` clips what it indexes, so both compare equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from app.errors import BadRequest
from app.fhir.search.dates import parse_range
from app.fhir.search.extract import REF_ID_LEN, TOKEN_LEN, clip, split_reference

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIX_LIKE = re.compile(r"^([a-z]{2})(.*)$")


@dataclass(frozen=True)
class TokenValue:
    system: str | None
    code: str | None
    match_system: bool  # False: `code` alone, any system matches


@dataclass(frozen=True)
class DateValue:
    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True)
class RefValue:
    type: str | None
    id: str | None
    url: str | None


def bad(msg: str, name: str, msg_id: str = "SF-0401") -> BadRequest:
    return BadRequest(msg, msg_id=msg_id, code="invalid", expression=name)


def split_values(raw: str) -> list[str]:
    """Split on unescaped commas. Escapes stay in place (`unescape` removes them) so that a `\\|`
    inside a token value is still told apart from the system separator."""
    out, cur, i = [], "", 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            cur += raw[i : i + 2]
            i += 2
            continue
        if ch == ",":
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    out.append(cur)
    return out


def unescape(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw)


def split_bar(raw: str) -> tuple[str, str] | None:
    """`system|code` split at the first unescaped bar; None when there is none."""
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            i += 2
            continue
        if raw[i] == "|":
            return unescape(raw[:i]), unescape(raw[i + 1 :])
        i += 1
    return None


def parse_token(raw: str) -> TokenValue:
    """`code`, `system|code`, `|code` (no system) or `system|` (any code in the system)."""
    split = split_bar(raw)
    if split is None:
        return TokenValue(None, clip(unescape(raw), TOKEN_LEN), False)
    system, code = split
    return TokenValue(clip(system or None, TOKEN_LEN), clip(code or None, TOKEN_LEN), True)


def parse_date(raw: str, name: str) -> DateValue:
    """`[prefix]value`; 400 naming the parameter for an unknown prefix or a malformed date."""
    prefix = "eq"
    raw = raw.replace(" ", "+")  # an unencoded `+01:00` offset arrives as a space
    m = _PREFIX_LIKE.match(raw)
    if m:
        if m.group(1) not in DATE_PREFIXES:
            raise bad(
                f"Invalid prefix '{m.group(1)}' in '{raw}' for parameter '{name}' "
                f"(allowed: {', '.join(DATE_PREFIXES)})",
                name,
                "SF-0402",
            )
        prefix, raw = m.group(1), m.group(2)
    rng = parse_range(raw)
    if rng is None:
        raise bad(f"Invalid date value '{raw}' for parameter '{name}'", name, "SF-0402")
    return DateValue(prefix, rng[0], rng[1])


def parse_reference(raw: str, base: str) -> RefValue:
    """`Type/id`, an absolute URL (ours is read as `Type/id`), or a bare `id`."""
    rtype, rid, url = split_reference(unescape(raw), base)
    if rtype is not None:
        return RefValue(rtype, rid, None)
    if url is not None and "/" not in url and ":" not in url:
        return RefValue(None, clip(url, REF_ID_LEN), None)
    return RefValue(None, None, url)
