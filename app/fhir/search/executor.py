"""Run a parsed search: the page, the total, `_include` and `_revinclude`
(https://hl7.org/fhir/R4/search.html#include). Each include step is one query over the whole page,
never one per resource."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.params import Include, SearchRequest
from app.fhir.search.prepared import page_statement
from app.fhir.search.sql import count_query, page_query
from app.storage.repository import StoredResource, current_select, row_to_stored
from app.storage.tables import idx_reference, resource

MAX_ITERATE = 5  # rounds of `_include:iterate` / `_revinclude:iterate`
Restrict = Callable[[Table, str | None], Sequence[ColumnElement[bool]]]


@dataclass
class SearchResult:
    request: SearchRequest
    matches: list[StoredResource]
    total: int | None
    included: list[StoredResource] = field(default_factory=list)
    includes_truncated: bool = False


async def run_search(
    session: AsyncSession, req: SearchRequest, *, max_includes: int = 1000, restrict: Restrict | None = None
) -> SearchResult:
    """`restrict(resource_table, type)` adds the caller's access conditions (the security policy) to the
    page, the total and the includes (`type` None: any type, for included resources)."""
    where = list(restrict(resource, req.resource_type)) if restrict else []
    if req.summary == "count":
        return SearchResult(req, [], int((await session.execute(count_query(req, where))).scalar_one()))
    rows = (await session.execute(*_page(req, where, restrict))).all() if req.count > 0 else []
    matches = [row_to_stored(r) for r in rows]
    total: int | None
    if req.total == "none":
        total = None
    elif req.count > 0 and len(matches) < req.count and (matches or req.offset == 0):
        total = req.offset + len(matches)  # the last page tells the total without counting
    else:
        total = int((await session.execute(count_query(req, where))).scalar_one())
    result = SearchResult(req, matches, total)
    if matches and (req.include or req.revinclude):
        await _add_includes(session, result, max_includes, list(restrict(resource, None)) if restrict else [])
    return result


def _page(req: SearchRequest, where: list[ColumnElement[bool]], restrict: Restrict | None) -> tuple[Any, ...]:
    """The page query and its parameters; shared by shape when the access conditions name who asks."""
    asker = getattr(restrict, "asker", None) if restrict is not None else None
    if restrict is not None and asker is None:
        return (page_query(req, where),)
    return page_statement(req, where, asker)


def _included_by(sources: list[StoredResource], inc: Include) -> Select[Any] | None:
    """Resources that the page's `inc.source_type` resources reference through `inc.param`."""
    pks = [s.pk for s in sources if s.resource_type == inc.source_type]
    if not pks:
        return None
    r = idx_reference.c
    keys = select(r.target_type, r.target_id).where(r.resource_pk.in_(pks), r.target_id.is_not(None))
    if inc.param != "*":
        keys = keys.where(r.param == inc.param)
    if inc.target_type:
        keys = keys.where(r.target_type == inc.target_type)
    return current_select().where(
        tuple_(resource.c.res_type, resource.c.res_id).in_(keys), resource.c.deleted.is_(False)
    )


def _referring_to(targets: list[StoredResource], inc: Include) -> Select[Any] | None:
    """Resources of `inc.source_type` whose `inc.param` references one of `targets`."""
    keys = sorted({(t.resource_type, t.id) for t in targets if inc.target_type in (None, t.resource_type)})
    if not keys:
        return None
    r = idx_reference.c
    pks = select(r.resource_pk).where(tuple_(r.target_type, r.target_id).in_(keys))
    if inc.source_type != "*":
        pks = pks.where(r.res_type == inc.source_type)
    else:  # the audit trail is reached by searching AuditEvent itself, never as a side effect of `*`
        pks = pks.where(r.res_type != "AuditEvent")
    if inc.param != "*":
        pks = pks.where(r.param == inc.param)
    return current_select().where(resource.c.pk.in_(pks), resource.c.deleted.is_(False))


async def _add_includes(
    session: AsyncSession, result: SearchResult, max_includes: int, where: list[ColumnElement[bool]]
) -> None:
    seen = {(m.resource_type, m.id) for m in result.matches}
    frontier = list(result.matches)
    req = result.request
    for round_ in range(MAX_ITERATE):
        new: list[StoredResource] = []
        steps = [(_included_by, i) for i in req.include] + [(_referring_to, i) for i in req.revinclude]
        for build, inc in steps:
            if round_ > 0 and not inc.iterate:
                continue
            stmt = build(frontier, inc)
            if stmt is None:
                continue
            room = max_includes - len(result.included) - len(new)
            stmt = stmt.where(*where).order_by(resource.c.pk).limit(room + len(seen) + 1)
            rows = (await session.execute(stmt)).all()
            for f in map(row_to_stored, rows):
                if (f.resource_type, f.id) in seen:
                    continue
                if len(result.included) + len(new) >= max_includes:
                    result.includes_truncated = True
                    break
                seen.add((f.resource_type, f.id))
                new.append(f)
        result.included.extend(new)
        if not new or result.includes_truncated:
            break
        frontier = new
