"""In-memory evaluation of search criteria against one resource, with the SAME semantics as the SQL
search: it reads values with the very extractors that feed the index
tables (`definitions.index_values`) and compares them as `app/search/sql.py` does. The subscription dispatcher
uses it for filters such as `Communication?recipient=PractitionerRole/123&patient=Patient/9`
(https://hl7.org/fhir/uv/subscriptions-backport/, R4 search: https://hl7.org/fhir/R4/search.html).

Chains and `:identifier` need the referenced resource: `resolve(type, id)` returns its current
content, or None when it does not exist or is deleted.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from app.fhir.search.criteria import Criterion
from app.fhir.search.dates import PY_OPS, instant_condition, parse_range, prefix_condition
from app.fhir.search.definitions import SUPPORTED_TYPES, index_values, params_for
from app.fhir.search.extract import normalize
from app.fhir.search.values import RefValue, TokenValue

Content = dict[str, Any]
Resolver = Callable[[str, str], Awaitable[Content | None] | Content | None]


async def matches(
    resource_type: str, content: Content, criteria: Iterable[Criterion], resolve: Resolver
) -> bool:
    """True when `content` (a `resource_type`) satisfies every criterion (they are ANDed)."""
    cache: dict[tuple[str, str], Content | None] = {}

    async def cached(rtype: str, rid: str) -> Content | None:
        if (rtype, rid) not in cache:
            found = resolve(rtype, rid)
            cache[(rtype, rid)] = await found if inspect.isawaitable(found) else found
        return cache[(rtype, rid)]

    for crit in criteria:
        if not await _match(resource_type, content, crit, cached):
            return False
    return True


def _token_ok(system: str | None, code: str | None, v: TokenValue) -> bool:
    if v.match_system and system != v.system:
        return False
    return v.code is None or code == v.code


def _value_ok(row: tuple[Any, ...], crit: Criterion, v: Any) -> bool:
    if crit.kind == "token":
        return _token_ok(row[0], row[1], v)
    if crit.kind == "uri":
        return bool(row[1] == v)
    if crit.kind == "string":
        norm, exact = row
        if crit.modifier == "exact":
            return bool(exact == v)
        return normalize(v) in norm if crit.modifier == "contains" else norm.startswith(normalize(v))
    if crit.kind == "date":
        return bool(prefix_condition(v.prefix, row[0], row[1], v.low, v.high, PY_OPS))
    ref: RefValue = v
    rtype, rid, url = row[0], row[1], row[2]
    if ref.url is not None:
        return bool(url == ref.url)
    return (
        rid == ref.id
        and (ref.type is None or rtype == ref.type)
        and (crit.type_hint is None or rtype == crit.type_hint)
    )


async def _match(rtype: str, content: Content, crit: Criterion, resolve: Any) -> bool:
    if crit.kind == "_id":
        found = content.get("id") in crit.values
        return not found if crit.modifier == "not" else found
    if crit.kind == "_lastUpdated":
        stamp = (content.get("meta") or {}).get("lastUpdated")
        rng = parse_range(stamp) if isinstance(stamp, str) else None
        return rng is not None and any(
            instant_condition(v.prefix, rng[0], v.low, v.high, PY_OPS) for v in crit.values
        )
    assert crit.param is not None
    rows = index_values(crit.param, content, crit.base)
    if crit.missing is not None:
        return (not rows) == crit.missing
    if crit.chain:
        return await _chain_match(rows, crit, resolve)
    if crit.modifier == "identifier":
        return await _identifier_match(rows, crit, resolve)
    found = any(_value_ok(row, crit, v) for v in crit.values for row in rows)
    return not found if crit.modifier == "not" else found


async def _chain_match(rows: list[tuple[Any, ...]], crit: Criterion, resolve: Any) -> bool:
    chained = dict(crit.chain)
    for rtype, rid, *_ in rows:
        if rtype not in chained or rid is None or (crit.type_hint and rtype != crit.type_hint):
            continue
        target = await resolve(rtype, rid)
        if target is not None and await _match(rtype, target, chained[rtype], resolve):
            return True
    return False


async def _identifier_match(rows: list[tuple[Any, ...]], crit: Criterion, resolve: Any) -> bool:
    """The Reference carries the identifier, or points at a resource that does."""
    assert crit.param is not None
    types = crit.param.targets or tuple(t for t in SUPPORTED_TYPES if "identifier" in params_for(t))
    for v in crit.values:
        for rtype, rid, _url, isys, ival in rows:
            if _token_ok(isys, ival, v):
                return True
            if rtype in types and rid is not None:
                target = await resolve(rtype, rid)
                ident = params_for(rtype)["identifier"]
                if target is not None and any(_token_ok(s, c, v) for s, c in index_values(ident, target, "")):
                    return True
    return False
