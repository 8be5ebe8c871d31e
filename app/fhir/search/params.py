"""Parse a FHIR search query (https://hl7.org/fhir/R4/search.html) into a typed `SearchRequest`.

Parsing is independent of storage: the SQL compiler (`sql.py`) and the in-memory matcher
(`matcher.py`) both consume the same `Criterion` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.errors import BadRequest
from app.fhir.search.dates import parse_range
from app.fhir.search.definitions import SPECIAL, SUPPORTED_TYPES, SearchParam, params_for
from app.fhir.search.extract import split_reference

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {
    "token": {"missing", "not", "text"},
    "uri": {"missing", "not"},
    "string": {"missing", "exact", "contains"},
    "date": {"missing"},
    "reference": {"missing", "identifier"},
}
RESULT_PARAMS = {
    "_count", "_offset", "_sort", "_include", "_revinclude", "_summary", "_total", "_elements",
    "_format", "_pretty",
}


@dataclass(frozen=True)
class TokenValue:
    system: str | None
    code: str | None
    match_system: bool  # False: "code" alone matches any system


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


@dataclass(frozen=True)
class Criterion:
    name: str
    kind: str  # token | uri | string | date | reference | _id | _lastUpdated
    param: SearchParam | None
    modifier: str | None
    values: tuple[Any, ...]  # ORed
    missing: bool | None = None
    chain_types: tuple[str, ...] = ()
    chain: Criterion | None = None


@dataclass(frozen=True)
class Include:
    source_type: str
    param: str
    target_type: str | None
    iterate: bool = False


@dataclass
class SearchRequest:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = 50
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)
    include: list[Include] = field(default_factory=list)
    revinclude: list[Include] = field(default_factory=list)
    summary: str | None = None
    total: str | None = None
    elements: list[str] | None = None
    unknown: list[str] = field(default_factory=list)
    query: list[tuple[str, str]] = field(default_factory=list)  # criteria + result params, for links


def _bad(msg: str, name: str, msg_id: str = "SF-0401") -> BadRequest:
    return BadRequest(msg, msg_id=msg_id, code="invalid", expression=name)


def _split_values(raw: str) -> list[str]:
    """Split on unescaped commas; `\\,` stays a literal comma."""
    out, cur, i = [], "", 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] in ",$|\\":
            cur += raw[i + 1]
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


def _split_bar(raw: str) -> tuple[str | None, str] | None:
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            i += 2
            continue
        if raw[i] == "|":
            return raw[:i].replace("\\|", "|"), raw[i + 1 :].replace("\\|", "|")
        i += 1
    return None


def parse_token(raw: str) -> TokenValue:
    split = _split_bar(raw)
    if split is None:
        return TokenValue(None, raw, False)
    system, code = split
    return TokenValue(system or None, code or None, True)


def parse_date(raw: str, name: str) -> DateValue:
    prefix = "eq"
    if raw[:2] in DATE_PREFIXES and not raw[:2].isdigit():
        prefix, raw = raw[:2], raw[2:]
    rng = parse_range(raw)
    if rng is None:
        raise _bad(f"Invalid date value '{raw}' for parameter '{name}'", name, "SF-0402")
    return DateValue(prefix, rng[0], rng[1])


def parse_reference(raw: str, base: str, type_hint: str | None) -> RefValue:
    rtype, rid, url = split_reference(raw, base)
    if rtype is None and url is None:
        return RefValue(type_hint, raw, None)
    if url is not None and "/" not in raw and "://" not in raw:
        return RefValue(type_hint, raw, None)
    if rtype is not None and type_hint is not None and rtype != type_hint:
        return RefValue(rtype, rid, None)  # contradictory: matches nothing of type_hint in SQL
    return RefValue(rtype, rid, url)


def _value(kind: str, raw: str, name: str, base: str, type_hint: str | None, modifier: str | None) -> Any:
    if raw == "":
        raise _bad(f"Empty value for parameter '{name}'", name, "SF-0403")
    if kind in ("token", "uri", "_id"):
        return parse_token(raw) if kind == "token" else TokenValue(None, raw, False)
    if kind in ("date", "_lastUpdated"):
        return parse_date(raw, name)
    if kind == "string":
        return raw
    if kind == "reference":
        if modifier == "identifier":
            return parse_token(raw)
        return parse_reference(raw, base, type_hint)
    raise _bad(f"Unsupported parameter type for '{name}'", name)


def parse_criterion(
    resource_type: str, key: str, raw: str, base: str
) -> Criterion | None:
    """One `name[:modifier][.chain]=value` pair; None when the name is unknown for the type."""
    name, _, chain_rest = key.partition(".")
    name, _, modifier_s = name.partition(":")
    modifier: str | None = modifier_s or None
    params = params_for(resource_type)
    if name in SPECIAL:
        kind = SPECIAL[name]
        param = None
        if modifier == "missing" or (modifier and name == "_lastUpdated"):
            raise _bad(f"Modifier ':{modifier}' is not supported on '{name}'", key, "SF-0404")
        if chain_rest:
            raise _bad(f"'{name}' cannot be chained", key, "SF-0405")
        values = tuple(_value("_id" if name == "_id" else "date", v, key, base, None, None) for v in _split_values(raw))
        return Criterion(name, "_id" if name == "_id" else "_lastUpdated", None, modifier, values)
    if name not in params:
        return None
    param = params[name]
    kind = param.type
    type_hint: str | None = None
    if modifier and modifier not in MODIFIERS.get(kind, set()):
        if kind == "reference" and modifier in SUPPORTED_TYPES:
            type_hint, modifier = modifier, None
        else:
            raise _bad(f"Modifier ':{modifier}' is not supported on {kind} parameter '{name}'", key, "SF-0404")
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise _bad(f"':missing' takes true or false, not '{raw}'", key, "SF-0406")
        return Criterion(name, kind, param, modifier, (), missing=raw == "true")
    if chain_rest:
        if kind != "reference":
            raise _bad(f"Only reference parameters can be chained ('{key}')", key, "SF-0405")
        types = (type_hint,) if type_hint else (param.targets or SUPPORTED_TYPES)
        chain_types, chained = [], None
        for t in types:
            c = parse_criterion(t, chain_rest, raw, base)
            if c is not None:
                chain_types.append(t)
                chained = c
        if chained is None:
            raise _bad(f"Unknown chained parameter '{chain_rest}' in '{key}'", key, "SF-0407")
        return Criterion(name, kind, param, None, (), chain_types=tuple(chain_types), chain=chained)
    if modifier == "text" and kind == "token":
        raise _bad(f"Modifier ':text' is not supported on '{name}'", key, "SF-0404")
    values = tuple(_value(kind, v, key, base, type_hint, modifier) for v in _split_values(raw))
    return Criterion(name, kind, param, modifier, values, chain_types=(type_hint,) if type_hint else ())


def _int(name: str, raw: str, lo: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"'{name}' must be an integer, not '{raw}'", name, "SF-0408") from None
    if value < lo:
        raise _bad(f"'{name}' must be at least {lo}", name, "SF-0408")
    return value


def _include(raw: str, name: str, iterate: bool, resource_type: str, rev: bool) -> Include:
    parts = raw.split(":")
    if raw == "*":
        return Include(resource_type, "*", None, iterate)
    if len(parts) not in (2, 3) or parts[0] not in SUPPORTED_TYPES:
        raise _bad(f"Invalid {name} value '{raw}': expected Type:parameter[:targetType]", name, "SF-0409")
    source, pname = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    param = params_for(source).get(pname)
    if pname != "*" and (param is None or param.type != "reference"):
        raise _bad(f"Invalid {name} value '{raw}': '{pname}' is not a reference parameter of {source}", name, "SF-0409")
    if target is not None and target not in SUPPORTED_TYPES:
        raise _bad(f"Invalid {name} value '{raw}': unknown target type", name, "SF-0409")
    if not rev and not iterate and source != resource_type:
        raise _bad(f"Invalid {name} value '{raw}': source type must be {resource_type}", name, "SF-0409")
    return Include(source, pname, target, iterate)


def parse_search(
    resource_type: str,
    query: list[tuple[str, str]],
    *,
    base: str,
    default_count: int = 50,
    max_count: int = 500,
) -> SearchRequest:
    req = SearchRequest(resource_type, count=default_count)
    for key, raw in query:
        bare = key.split(":")[0]
        if bare in RESULT_PARAMS:
            _result_param(req, key, bare, raw, max_count)
            if bare not in ("_offset", "_format", "_pretty"):
                req.query.append((key, raw))
            continue
        crit = parse_criterion(resource_type, key, raw, base)
        if crit is None:
            req.unknown.append(key)
            continue
        req.criteria.append(crit)
        req.query.append((key, raw))
    return req


def _result_param(req: SearchRequest, key: str, bare: str, raw: str, max_count: int) -> None:
    if bare == "_count":
        req.count = min(_int(key, raw, 0), max_count)
    elif bare == "_offset":
        req.offset = _int(key, raw, 0)
    elif bare == "_sort":
        for item in raw.split(","):
            desc = item.startswith("-")
            pname = item.lstrip("-")
            known = pname in SPECIAL or pname in params_for(req.resource_type)
            if not known or (pname in params_for(req.resource_type) and params_for(req.resource_type)[pname].type == "reference"):
                raise _bad(f"Cannot sort on '{pname}'", key, "SF-0410")
            req.sort.append((pname, desc))
    elif bare in ("_include", "_revinclude"):
        iterate = key.endswith(":iterate") or key.endswith(":recurse")
        for item in raw.split(","):
            inc = _include(item, bare, iterate, req.resource_type, bare == "_revinclude")
            (req.include if bare == "_include" else req.revinclude).append(inc)
    elif bare == "_summary":
        if raw not in ("count", "false", "data"):
            raise _bad(f"_summary={raw} is not supported (count, data and false are)", key, "SF-0411")
        req.summary = None if raw == "false" else raw
    elif bare == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise _bad(f"_total must be none, estimate or accurate, not '{raw}'", key, "SF-0412")
        req.total = raw
    elif bare == "_elements":
        req.elements = [e.strip() for e in raw.split(",") if e.strip()]
