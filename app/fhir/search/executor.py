"""Run a parsed search: the page, the total, `_include` and `_revinclude`."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.params import Include, SearchRequest
from app.fhir.search.sql import count_query, page_query
from app.storage.repository import StoredResource, current_select, row_to_stored
from app.storage.tables import idx_reference, resource


@dataclass
class SearchResult:
    request: SearchRequest
    matches: list[StoredResource]
    total: int | None
    included: list[StoredResource] = field(default_factory=list)
    includes_truncated: bool = False


async def run_search(session: AsyncSession, req: SearchRequest, *, max_includes: int = 1000) -> SearchResult:
    if req.summary == "count":
        total = (await session.execute(count_query(req))).scalar_one()
        return SearchResult(req, [], int(total))
    rows = (await session.execute(page_query(req))).all() if req.count > 0 else []
    matches = [row_to_stored(r) for r in rows]
    total: int | None
    if req.total == "none":
        total = None
    elif req.offset == 0 and len(matches) < req.count:
        total = len(matches)
    else:
        total = int((await session.execute(count_query(req))).scalar_one())
    result = SearchResult(req, matches, total)
    if matches and (req.include or req.revinclude):
        await _add_includes(session, result, max_includes)
    return result


async def fetch_current(session: AsyncSession, keys: set[tuple[str, str]]) -> list[StoredResource]:
    """Current, not deleted, versions of the given (type, id) pairs."""
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    out: list[StoredResource] = []
    for rtype, rids in sorted(by_type.items()):
        stmt = current_select().where(
            resource.c.res_type == rtype, resource.c.res_id.in_(sorted(rids)), resource.c.deleted.is_(False)
        )
        out.extend(row_to_stored(r) for r in (await session.execute(stmt)).all())
    return out


async def _targets_of(
    session: AsyncSession, sources: list[StoredResource], inc: Include
) -> set[tuple[str, str]]:
    pks = [s.pk for s in sources if s.resource_type == inc.source_type or inc.param == "*"]
    if not pks:
        return set()
    r = idx_reference.c
    stmt = select(r.target_type, r.target_id).where(
        r.resource_pk.in_(pks), r.target_type.is_not(None), r.target_id.is_not(None)
    )
    if inc.param != "*":
        stmt = stmt.where(r.param == inc.param)
    if inc.target_type:
        stmt = stmt.where(r.target_type == inc.target_type)
    return {(t, i) for t, i in (await session.execute(stmt)).all()}


async def _referrers_of(
    session: AsyncSession, targets: list[StoredResource], inc: Include, limit: int
) -> list[StoredResource]:
    by_type: dict[str, list[str]] = {}
    for t in targets:
        by_type.setdefault(t.resource_type, []).append(t.id)
    out: list[StoredResource] = []
    r = idx_reference.c
    for ttype, ids in by_type.items():
        if inc.target_type and inc.target_type != ttype:
            continue
        pk_sub = select(r.resource_pk).where(
            r.res_type == inc.source_type, r.target_type == ttype, r.target_id.in_(ids)
        )
        if inc.param != "*":
            pk_sub = pk_sub.where(r.param == inc.param)
        stmt = (
            current_select()
            .where(resource.c.pk.in_(pk_sub), resource.c.deleted.is_(False))
            .order_by(resource.c.pk)
            .limit(limit + 1)
        )
        out.extend(row_to_stored(row) for row in (await session.execute(stmt)).all())
    return out


async def _add_includes(session: AsyncSession, result: SearchResult, max_includes: int) -> None:
    seen = {(m.resource_type, m.id) for m in result.matches}
    frontier = list(result.matches)
    for _round in range(3):  # _include:iterate follows at most three hops
        new: list[StoredResource] = []
        for inc in result.request.include:
            if _round > 0 and not inc.iterate:
                continue
            keys = await _targets_of(session, frontier, inc) - seen
            for f in await fetch_current(session, keys):
                if (f.resource_type, f.id) not in seen:
                    seen.add((f.resource_type, f.id))
                    new.append(f)
        for inc in result.request.revinclude:
            if _round > 0 and not inc.iterate:
                continue
            for f in await _referrers_of(session, frontier, inc, max_includes):
                if (f.resource_type, f.id) not in seen:
                    seen.add((f.resource_type, f.id))
                    new.append(f)
        if len(result.included) + len(new) > max_includes:
            new = new[: max_includes - len(result.included)]
            result.includes_truncated = True
        result.included.extend(new)
        if not new or result.includes_truncated:
            break
        frontier = new
