"""Prepared searches: a search of fixed shape whose values change, turned into SQL once.

The safeguarding rules run the same few searches on every write (the duplicate-flag check, the ED
routing lookups), each time with other values; building the SQLAlchemy statement costs several times
the CPU of running it. A template is an ordinary FHIR query in which a whole value (a token's code or
system, a reference's id, an `_id`) may be a `:name` placeholder:

    FLAG_BY_CHILD = prepared("Flag", [("subject:identifier", f"{NHS}|:nhs"), ("status", "active")])
    matches = await FLAG_BY_CHILD.run(session, nhs="9990000018")

It is parsed and compiled by the same code as any search (`app/fhir/search/params.py`, `sql.py`), so it matches exactly
what the same query with the values written in would match; the placeholders become bound parameters.
A placeholder where a value is transformed before it reaches SQL (a string prefix, a date) cannot be
bound, and is refused when the template is prepared. Only the page query is prepared: no `_include`,
no total, the first `count` matches in the usual order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import visitors

from app.fhir.search.criteria import Criterion
from app.fhir.search.params import SearchRequest, parse_search
from app.fhir.search.values import RefValue, TokenValue
from app.search.sql import page_query
from app.storage import buffer
from app.storage.contents import stored
from app.storage.db import plan_with_values
from app.storage.tables import SEARCHED_TABLES
from app.stored import StoredResource

V = TypeVar("V")
PLACEHOLDER = re.compile(r":([a-z][a-z0-9_]*)")
# The base only resolves absolute references in a query; templates use relative ones.
_TEMPLATE_BASE = "http://prepared.invalid/fhir"


def _map_value(value: Any, bind: Callable[[str], Any]) -> Any:
    """`value` with each of its strings that reach SQL as they are given to `bind`."""
    if isinstance(value, TokenValue):
        return replace(value, system=_maybe(value.system, bind), code=_maybe(value.code, bind))
    if isinstance(value, RefValue):
        return replace(value, id=_maybe(value.id, bind))
    return _maybe(value, bind)


def _maybe(value: Any, bind: Callable[[str], Any]) -> Any:
    return bind(value) if isinstance(value, str) else value


def _map_criterion(crit: Criterion, bind: Callable[[str], Any]) -> Criterion:
    """`crit` with `bind` applied to every value that can be a bound parameter, in a fixed order."""
    if crit.kind in ("string", "date", "_lastUpdated"):  # transformed on the way to SQL: never bound
        return crit
    return replace(
        crit,
        values=tuple(_map_value(v, bind) for v in crit.values),
        chain=tuple((t, _map_criterion(c, bind)) for t, c in crit.chain),
    )


def _bound_names(stmt: Select[Any]) -> set[str]:
    """The names of the statement's named bound parameters (anonymous ones are named "%(...)")."""
    return {b.key for b in visitors.iterate(stmt) if isinstance(b, BindParameter) and not b.key.startswith("%")}


@dataclass(frozen=True)
class PreparedSearch:
    statement: Select[Any]
    names: frozenset[str]

    async def run(self, session: AsyncSession, **values: str) -> list[StoredResource]:
        if set(values) != self.names:
            raise TypeError(f"this search takes exactly {sorted(self.names)}, not {sorted(values)}")
        await buffer.flush(session, reading=SEARCHED_TABLES)  # the rows queued for what it reads: it sees them
        await plan_with_values(session)
        rows = (await session.execute(self.statement, values)).all()
        return await stored(session, rows)


def prepared(resource_type: str, template: list[tuple[str, str]], *, count: int = 100) -> PreparedSearch:
    """Prepare `template` (see the module docstring); ValueError for a template that cannot be."""
    req = parse_search(resource_type, [*template, ("_count", str(count)), ("_total", "none")],
                       base=_TEMPLATE_BASE, max_count=1000)
    if req.include or req.revinclude or req.summary or req.unknown:
        raise ValueError("a prepared search has no _include, _revinclude, _summary or unknown parameters")
    names: set[str] = set()

    def placeholder(value: str) -> Any:
        if m := PLACEHOLDER.fullmatch(value):
            names.add(m.group(1))
            return bindparam(m.group(1))
        return value

    req = replace(req, criteria=[_map_criterion(c, placeholder) for c in req.criteria])
    stmt = page_query(req)
    bound = _bound_names(stmt)
    template_text = "&".join(f"{k}={v}" for k, v in template)
    lost = {m for _, v in template for m in PLACEHOLDER.findall(v)} - names
    if lost or not names <= bound:
        raise ValueError(f"placeholders {sorted(lost or names - bound)} in {template_text} cannot be bound")
    return PreparedSearch(stmt, frozenset(names))


# -- every search's page query, built once per shape --------------------------------------------
# A shape is a search with the values that become bound parameters left out, plus who asks (the
# access conditions depend on the principal only). The CP-IS check, the rules' lookups and an EPR's
# polling repeat a few shapes with other values; building the statement was a fifth of a search's CPU.
_SLOT = "\x00"  # stands for a value in a shape: params.py refuses NUL in any search value
_SHAPES: dict[Any, Select[Any] | None] = {}  # least recently used first
MAX_SHAPES = 256  # a CP-IS shape with a clinician's access conditions holds about 50 KB


def recently_used(cache: dict[Any, V], key: Hashable, size: int, build: Callable[[], V]) -> V:
    """`cache[key]`, built by `build` when missing; `cache` keeps the `size` most recently used entries
    (a dict remembers insertion order: least recently used first)."""
    if key in cache:
        value = cache[key] = cache.pop(key)
        return value
    value = build()
    if len(cache) >= size:
        cache.pop(next(iter(cache)))
    cache[key] = value
    return value


def page_statement(
    req: SearchRequest, where: Sequence[ColumnElement[bool]], asker: Hashable
) -> tuple[Select[Any], dict[str, Any]]:
    """`page_query(req, where)` as a statement and its parameters. `where` must depend on `asker` only.

    The first search of a shape builds the statement with bound parameters in place of its values and
    checks that every one of them reached the SQL; a shape where one did not (a value read by Python
    while building) is built afresh with its values every time, exactly as before."""
    values: list[str] = []

    def take(value: str) -> str:
        values.append(value)
        return _SLOT

    shape = (asker, req.resource_type, tuple(_map_criterion(c, take) for c in req.criteria), req.count,
             req.offset, tuple(req.sort))
    stmt = recently_used(_SHAPES, shape, MAX_SHAPES, lambda: _template(req, where))
    if stmt is None:
        return page_query(req, where), {}
    return stmt, {f"v{i}": v for i, v in enumerate(values)}


def _template(req: SearchRequest, where: Sequence[ColumnElement[bool]]) -> Select[Any] | None:
    names: list[str] = []

    def bind(_value: str) -> Any:
        names.append(f"v{len(names)}")
        return bindparam(names[-1])

    try:
        stmt = page_query(replace(req, criteria=[_map_criterion(c, bind) for c in req.criteria]), where)
    except Exception:  # noqa: BLE001 - a value read by Python while building: not a shape to share
        return None
    return stmt if set(names) <= _bound_names(stmt) else None
