"""One search criterion, `name[:modifier][.chain]=value[,value]`, parsed into a `Criterion`
(https://hl7.org/fhir/R4/search.html#modifiers, #chaining).

A `Criterion` is storage-independent: `app/search/sql.py` compiles it for the database and `matcher.py`
evaluates it in memory for subscription filters, so both read it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from app.errors import BadRequest
from app.fhir.search.definitions import SPECIAL, SUPPORTED_TYPES, SearchParam, params_for
from app.fhir.search.limits import Budget, SearchTooCostly
from app.fhir.search.values import bad, parse_date, parse_reference, parse_token, split_values, unescape

# modifiers each parameter type accepts here (https://hl7.org/fhir/R4/search.html#modifiers);
# a reference also takes a resource type (`subject:Patient`)
MODIFIERS = {
    "token": ("missing", "not"),
    "uri": ("missing",),
    "string": ("missing", "exact", "contains"),
    "date": ("missing",),
    "reference": ("missing", "identifier"),
    "_id": ("not",),
    "_lastUpdated": (),
}


@dataclass(frozen=True)
class Criterion:
    """One search parameter with its ORed values; several criteria are ANDed."""

    name: str  # the parameter's registry name, without modifier or chain
    kind: str  # token | uri | string | date | reference | _id | _lastUpdated
    param: SearchParam | None  # None for _id and _lastUpdated
    modifier: str | None  # missing | not | exact | contains | identifier | None
    values: tuple[Any, ...] = ()  # TokenValue | DateValue | RefValue | str (string, _id)
    missing: bool | None = None  # the value of `:missing`
    type_hint: str | None = None  # reference `:Type` modifier
    chain: tuple[tuple[str, Criterion], ...] = ()  # (target type, criterion on that type), ORed
    base: str = ""  # the FHIR base absolute references are read against (the matcher needs it too)
    key: str = ""  # the query key as sent, for messages


def _modifier_error(key: str, kind: str, modifier: str) -> Exception:
    allowed = ", ".join(f":{m}" for m in MODIFIERS[kind]) or "none"
    if kind == "reference":
        allowed += ", :[type]"
    label = kind if kind.startswith("_") else f"{kind} parameter"
    return bad(
        f"Modifier ':{modifier}' is not supported on {label} '{key.split(':')[0]}' (supported: {allowed})",
        key,
        "SF-0404",
    )


def _values(raw: str, key: str, parse: Any, budget: Budget | None) -> tuple[Any, ...]:
    parts = [p for p in split_values(raw) if p != ""]
    if not parts:
        raise bad(f"Empty value for parameter '{key}'", key, "SF-0403")
    if budget is not None:
        budget.spend(key, values=len(parts))
    return tuple(parse(p) for p in parts)


def _chain_types(param: SearchParam, type_hint: str | None, chained_name: str) -> tuple[str, ...]:
    if type_hint:
        return (type_hint,)
    if param.targets:
        return param.targets
    name = chained_name.split(":")[0].split(".")[0]
    return tuple(t for t in SUPPORTED_TYPES if name in SPECIAL or name in params_for(t))


def parse_criterion(resource_type: str, key: str, raw: str, base: str, budget: Budget | None = None) -> Criterion | None:
    """Parse one `key=value` pair for `resource_type`; None when the parameter is unknown there.
    With a `budget` (limits.py), its values (a chain's, per type it is tried on) spend from it."""
    if budget is not None:
        budget.check_chain(key)
    head, dot, chain_rest = key.partition(".")
    name, _, modifier_s = head.partition(":")
    modifier = modifier_s or None
    if name in SPECIAL:
        kind = name
        if modifier and modifier not in MODIFIERS[kind]:
            raise _modifier_error(key, kind, modifier)
        if dot:
            raise bad(f"'{name}' cannot be chained ('{key}')", key, "SF-0416")
        if kind == "_id":
            return Criterion(name, kind, None, modifier, _values(raw, key, unescape, budget), base=base, key=key)
        values = _values(raw, key, lambda v: parse_date(unescape(v), key), budget)
        return Criterion(name, kind, None, None, values, base=base, key=key)
    param = params_for(resource_type).get(name)
    if param is None:
        return None
    kind = param.type
    type_hint: str | None = None
    if modifier and modifier not in MODIFIERS[kind]:
        if kind == "reference" and modifier in SUPPORTED_TYPES:
            type_hint, modifier = modifier, None
        else:
            raise _modifier_error(key, kind, modifier)
    if modifier == "missing":
        if dot:
            raise bad(f"':missing' cannot be chained ('{key}')", key, "SF-0416")
        if raw not in ("true", "false"):
            raise bad(f"':missing' takes true or false, not '{raw}'", key, "SF-0417")
        if budget is not None:
            budget.spend(key, values=1)
        return Criterion(name, kind, param, modifier, missing=raw == "true", base=base, key=key)
    if dot:
        if kind != "reference" or modifier == "identifier":
            raise bad(f"Only reference parameters can be chained ('{key}')", key, "SF-0416")
        chain = []
        for t in _chain_types(param, type_hint, chain_rest):
            try:
                c = parse_criterion(t, chain_rest, raw, base, budget)
            except SearchTooCostly as exc:  # name the whole chain, as the client sent it
                raise SearchTooCostly(issues=[replace(exc.issues[0], expression=(key,))]) from None
            except BadRequest as exc:  # name the whole chain, as the client sent it
                raise bad(exc.issues[0].diagnostics, key, exc.issues[0].msg_id or "SF-0416") from None
            if c is not None:
                chain.append((t, c))
        if not chain:
            raise bad(f"Unknown chained parameter '{chain_rest}' in '{key}'", key, "SF-0407")
        return Criterion(name, kind, param, None, type_hint=type_hint, chain=tuple(chain), base=base, key=key)
    if kind in ("token", "uri") or modifier == "identifier":
        parse: Any = parse_token if kind == "token" or modifier == "identifier" else unescape
    elif kind == "string":
        parse = unescape
    elif kind == "date":
        def parse(v: str) -> Any:
            return parse_date(unescape(v), key)
    else:
        def parse(v: str) -> Any:
            return parse_reference(v, base)
    return Criterion(name, kind, param, modifier, _values(raw, key, parse, budget), type_hint=type_hint, base=base,
                     key=key)
