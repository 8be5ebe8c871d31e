"""Prepared searches: a search of fixed shape whose values change, turned into SQL once.

The safeguarding rules run the same few searches on every write (the duplicate-flag check, the ED
routing lookups), each time with other values; building the SQLAlchemy statement costs several times
the CPU of running it. A template is an ordinary FHIR query in which a whole value (a token's code or
system, a reference's id, an `_id`) may be a `:name` placeholder:

    FLAG_BY_CHILD = prepared("Flag", [("subject:identifier", f"{NHS}|:nhs"), ("status", "active")])
    matches = await FLAG_BY_CHILD.run(session, nhs="9990000018")

It is parsed and compiled by the same code as any search (`params.py`, `sql.py`), so it matches exactly
what the same query with the values written in would match; the placeholders become bound parameters.
A placeholder where a value is transformed before it reaches SQL (a string prefix, a date) cannot be
bound, and is refused when the template is prepared. Only the page query is prepared: no `_include`,
no total, the first `count` matches in the usual order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import BindParameter, Select, bindparam
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.criteria import Criterion
from app.fhir.search.params import parse_search
from app.fhir.search.sql import page_query
from app.fhir.search.values import RefValue, TokenValue
from app.storage.repository import StoredResource, row_to_stored

PLACEHOLDER = re.compile(r":([a-z][a-z0-9_]*)")
# The base only resolves absolute references in a query; templates use relative ones.
_TEMPLATE_BASE = "http://prepared.invalid/fhir"


def _bind(value: Any, names: set[str]) -> Any:
    if isinstance(value, str) and (m := PLACEHOLDER.fullmatch(value)):
        names.add(m.group(1))
        return bindparam(m.group(1))
    return value


def _bind_value(value: Any, names: set[str]) -> Any:
    if isinstance(value, TokenValue):
        return replace(value, system=_bind(value.system, names), code=_bind(value.code, names))
    if isinstance(value, RefValue):
        return replace(value, id=_bind(value.id, names))
    return _bind(value, names)


def _bind_criterion(crit: Criterion, names: set[str]) -> Criterion:
    if crit.kind in ("string", "date", "_lastUpdated"):  # transformed on the way to SQL: never bound
        return crit
    return replace(
        crit,
        values=tuple(_bind_value(v, names) for v in crit.values),
        chain=tuple((t, _bind_criterion(c, names)) for t, c in crit.chain),
    )


@dataclass(frozen=True)
class PreparedSearch:
    statement: Select[Any]
    names: frozenset[str]

    async def run(self, session: AsyncSession, **values: str) -> list[StoredResource]:
        if set(values) != self.names:
            raise TypeError(f"this search takes exactly {sorted(self.names)}, not {sorted(values)}")
        rows = (await session.execute(self.statement, values)).all()
        return [row_to_stored(r) for r in rows]


def prepared(resource_type: str, template: list[tuple[str, str]], *, count: int = 100) -> PreparedSearch:
    """Prepare `template` (see the module docstring); ValueError for a template that cannot be."""
    req = parse_search(resource_type, [*template, ("_count", str(count)), ("_total", "none")],
                       base=_TEMPLATE_BASE, max_count=1000)
    if req.include or req.revinclude or req.summary or req.unknown:
        raise ValueError("a prepared search has no _include, _revinclude, _summary or unknown parameters")
    names: set[str] = set()
    req = replace(req, criteria=[_bind_criterion(c, names) for c in req.criteria])
    stmt = page_query(req)
    bound = {
        b.key for b in stmt._generate_cache_key().bindparams  # type: ignore[union-attr]
        if isinstance(b, BindParameter) and not b.key.startswith("%")
    }
    template_text = "&".join(f"{k}={v}" for k, v in template)
    lost = {m for _, v in template for m in PLACEHOLDER.findall(v)} - names
    if lost or not names <= bound:
        raise ValueError(f"placeholders {sorted(lost or names - bound)} in {template_text} cannot be bound")
    return PreparedSearch(stmt, frozenset(names))
