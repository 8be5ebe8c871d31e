"""Parse a FHIR search query (https://hl7.org/fhir/R4/search.html) into a typed `SearchRequest`:
the criteria (`criteria.py`) and the result parameters `_count`, `_sort`, `_include`, `_revinclude`,
`_summary`, `_total`, `_elements` (https://hl7.org/fhir/R4/search.html#return).

Parsing is independent of storage: the SQL compiler (`app/search/sql.py`) and the in-memory matcher
(`matcher.py`) both consume the same `Criterion` objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.fhir.search.criteria import Criterion, parse_criterion
from app.fhir.search.definitions import SPECIAL, SUPPORTED_TYPES, params_for
from app.fhir.search.limits import DEFAULT_LIMITS, Budget, SearchLimits
from app.fhir.search.values import DateValue, RefValue, TokenValue, bad, parse_date

__all__ = [
    "Criterion", "DateValue", "Include", "RefValue", "SearchRequest", "TokenValue",
    "parse_criterion", "parse_date", "parse_search", "read_summary",
]

RESULT_PARAMS = {
    "_count", "_offset", "_sort", "_include", "_revinclude", "_summary", "_total", "_elements",
    "_format", "_pretty",
}
MAX_OFFSET = 2**31 - 1
SUMMARY_MODES = ("true", "text", "data", "count", "false")


def read_summary(values: list[str]) -> str | None:
    """The `_summary` of a read or vread (https://hl7.org/fhir/R4/search.html#summary): true, text or
    data (None for none or `false`); `count` belongs to searches; 400 for anything else or a repeat."""
    if not values:
        return None
    if len(values) > 1 or values[0] not in SUMMARY_MODES or values[0] == "count":
        modes = ", ".join(m for m in SUMMARY_MODES if m != "count")
        raise bad(f"_summary={','.join(values)[:100]} is not supported on a read (supported: {modes})", "_summary",
                  "SF-0411")
    return None if values[0] == "false" else values[0]


@dataclass(frozen=True)
class Include:
    source_type: str  # "*" for `_revinclude=*`
    param: str  # "*" for every reference parameter
    target_type: str | None
    iterate: bool = False


@dataclass
class SearchRequest:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = 50
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (parameter, descending)
    include: list[Include] = field(default_factory=list)
    revinclude: list[Include] = field(default_factory=list)
    summary: str | None = None
    total: str | None = None
    elements: list[str] | None = None
    unknown: list[str] = field(default_factory=list)
    query: list[tuple[str, str]] = field(default_factory=list)  # what was applied, for the links


def parse_search(
    resource_type: str,
    query: list[tuple[str, str]],
    *,
    base: str,
    default_count: int = 50,
    max_count: int = 500,
    limits: SearchLimits | None = DEFAULT_LIMITS,
) -> SearchRequest:
    """Criteria are ANDed across parameters; unknown parameters are collected in `unknown`. More
    criteria or values than `limits` allow is a 400 `too-costly` (limits.py)."""
    req = SearchRequest(resource_type, count=default_count)
    budget = Budget(limits)
    for key, raw in query:
        if "\x00" in key or "\x00" in raw:
            raise bad("Search parameters may not contain NUL characters", key.replace("\x00", ""), "SF-0401")
        bare = key.split(":")[0]
        if bare in RESULT_PARAMS:
            _result_param(req, key, bare, raw, max_count, budget)
            if bare not in ("_count", "_offset", "_format", "_pretty"):
                req.query.append((key, raw))
            continue
        budget.spend(key, criteria=1)
        crit = parse_criterion(resource_type, key, raw, base, budget)
        if crit is None:
            req.unknown.append(key)
            continue
        req.criteria.append(crit)
        req.query.append((key, raw))
    return req


def _int(name: str, raw: str, lo: int, hi: int | None = None) -> int:
    text = raw.strip()
    if not re.fullmatch(r"-?[0-9]+", text):
        raise bad(f"'{name}' must be an integer, not '{raw}'", name, "SF-0408")
    # more digits than int() takes (or than any database needs) is simply "very large"
    value = int(text) if len(text) <= 18 else (-1 if text.startswith("-") else 10**18)
    if value < lo:
        raise bad(f"'{name}' must be at least {lo}", name, "SF-0408")
    if hi is not None and value > hi:
        raise bad(f"'{name}' must be at most {hi}", name, "SF-0408")
    return value


def _sort(req: SearchRequest, key: str, raw: str, budget: Budget) -> None:
    if key != "_sort":
        raise bad(f"Modifiers are not supported on _sort ('{key}')", key, "SF-0410")
    params = params_for(req.resource_type)
    for item in raw.split(","):
        budget.spend(key, criteria=1)
        desc = item.startswith("-")
        name = item[1:] if desc else item
        param = params.get(name)
        if name not in SPECIAL and (param is None or param.type not in ("token", "string", "date", "uri")):
            what = "not a search parameter" if name not in SPECIAL and param is None else "a reference"
            raise bad(f"Cannot sort on '{name}' ({what} of {req.resource_type})", key, "SF-0410")
        req.sort.append((name, desc))


def _include(raw: str, key: str, bare: str, iterate: bool, resource_type: str) -> Include:
    rev = bare == "_revinclude"
    if raw == "*":
        return Include("*" if rev else resource_type, "*", None, iterate)
    parts = raw.split(":")
    if len(parts) not in (2, 3) or parts[0] not in SUPPORTED_TYPES:
        raise bad(f"Invalid {bare} value '{raw}': expected Type:parameter[:targetType]", key, "SF-0418")
    source, pname = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    param = params_for(source).get(pname)
    if pname != "*" and (param is None or param.type != "reference"):
        raise bad(f"Invalid {bare} value '{raw}': '{pname}' is not a reference parameter of {source}", key, "SF-0418")
    if target is not None and target not in SUPPORTED_TYPES:
        raise bad(f"Invalid {bare} value '{raw}': unknown target type '{target}'", key, "SF-0418")
    if not rev and not iterate and source != resource_type:
        raise bad(f"Invalid {bare} value '{raw}': the source type must be {resource_type} "
                  "(or use _include:iterate)", key, "SF-0418")
    return Include(source, pname, target, iterate)


def _result_param(req: SearchRequest, key: str, bare: str, raw: str, max_count: int, budget: Budget) -> None:
    if bare in ("_include", "_revinclude"):
        modifier = key[len(bare) + 1 :] if ":" in key else ""
        if modifier not in ("", "iterate", "recurse"):
            raise bad(f"Modifier ':{modifier}' is not supported on {bare} (supported: :iterate)", key, "SF-0404")
        for item in raw.split(","):
            budget.spend(key, criteria=1)
            inc = _include(item, key, bare, bool(modifier), req.resource_type)
            (req.include if bare == "_include" else req.revinclude).append(inc)
        return
    if key != bare:
        raise bad(f"Modifiers are not supported on {bare} ('{key}')", key, "SF-0404")
    if bare == "_count":
        req.count = min(_int(key, raw, 0), max_count)
    elif bare == "_offset":
        req.offset = _int(key, raw, 0, MAX_OFFSET)
    elif bare == "_sort":
        _sort(req, key, raw, budget)
    elif bare == "_summary":
        if raw not in SUMMARY_MODES:
            raise bad(f"_summary={raw} is not supported (supported: {', '.join(SUMMARY_MODES)})", key, "SF-0411")
        req.summary = None if raw == "false" else raw
    elif bare == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise bad(f"_total must be none, estimate or accurate, not '{raw}'", key, "SF-0419")
        req.total = raw
    elif bare == "_elements":
        names = [e.strip() for e in raw.split(",") if e.strip()]
        # `Flag.status` is accepted as well as `status` (HAPI does the same)
        req.elements = [n.split(".", 1)[1] if n.startswith(req.resource_type + ".") else n for n in names] or None
