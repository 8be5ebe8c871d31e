"""Run a parsed search: the page, the total, `_include` and `_revinclude`
(https://hl7.org/fhir/R4/search.html#include). Each include step is one query over the whole page,
never one per resource."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, Table, and_, any_, bindparam, or_, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.definitions import SUPPORTED_TYPES, params_for
from app.fhir.search.params import Include, SearchRequest
from app.fhir.search.results import SearchResult
from app.search.prepared import page_statement, recently_used
from app.search.sql import count_query, never, page_query
from app.storage import buffer
from app.storage.contents import LEAN_COLS, stored
from app.storage.db import plan_generically, plan_with_values
from app.storage.tables import SEARCHED_TABLES, idx_reference, resource
from app.stored import StoredResource

MAX_ITERATE = 5  # rounds of `_include:iterate` / `_revinclude:iterate`
# An `_include` from at most this many pks keeps PostgreSQL's generic plans (app/storage/db.py
# `plan_generically`): they take an array parameter for ten values, and for so few pks the plans made
# with the values are the same index scans (by resource_pk, then by type and id; EXPLAIN ANALYZE on a
# notice's page), only planned anew at every view (0.25-0.45 ms each). From a list's page of 50-200 they
# are not: the planner turns to bitmap scans by target, and the generic index scan ran up to 3x slower.
GENERIC_PKS = 10
Restrict = Callable[[Table, str | None], Sequence[ColumnElement[bool]]]
# (parameter, content) -> its reference rows, for sources whose references are read off their JSON
# rather than the index tables (AuditEvents, kept in the audit trail's own table)
RefsOf = Callable[[Any, dict[str, Any]], list[tuple[Any, ...]]]
# (targets as (type, id), parameter or `*`, at most how many) -> the AuditEvents naming them that the
# asker may see: `_revinclude=AuditEvent:...` is answered from the audit trail's own table
AuditSource = Callable[[list[tuple[str, str]], str, int], Awaitable[list[StoredResource]]]


async def run_search(
    session: AsyncSession, req: SearchRequest, *, max_includes: int = 1000, restrict: Restrict | None = None,
    audit: AuditSource | None = None,
) -> SearchResult:
    """`restrict(resource_table, type)` adds the caller's access conditions (the security policy) to the
    page, the total and the includes (`type` None: any type, for included resources); `audit` answers
    `_revinclude=AuditEvent:...` (none without it). Rows the transaction queued for what it reads go first, so
    that the search sees them (app/storage/buffer.py). Its statements are planned with their values
    (app/storage/db.py `plan_with_values`)."""
    await buffer.flush(session, reading=SEARCHED_TABLES)
    where = list(restrict(resource, req.resource_type)) if restrict else []
    if never(where):  # the asker may see nothing of the type: nothing to ask the database
        return SearchResult(req, [], None if req.total == "none" and req.summary != "count" else 0)
    await plan_with_values(session)
    if req.summary == "count":
        return SearchResult(req, [], int((await session.execute(count_query(req, where))).scalar_one()))
    share = _share_key(restrict)
    rows = (await session.execute(*_page(req, where, share))).all() if req.count > 0 else []
    matches = await stored(session, rows)
    total: int | None
    if req.total == "none":
        total = None
    elif req.count > 0 and len(matches) < req.count and (matches or req.offset == 0):
        total = req.offset + len(matches)  # the last page tells the total without counting
    else:
        total = int((await session.execute(count_query(req, where))).scalar_one())
    result = SearchResult(req, matches, total)
    if matches and (req.include or req.revinclude):
        await add_includes(session, result, max_includes, restrict, audit=audit)
    return result


def _share_key(restrict: Restrict | None) -> Hashable | None:
    """What the access conditions depend on, so that statements built with them can be shared: who
    asks (a `Restriction` names its principal), or nothing without conditions; None: not shareable."""
    if restrict is None:
        return ("server",)
    asker = getattr(restrict, "asker", None)
    return ("asker", asker) if asker is not None else None


def _page(req: SearchRequest, where: list[ColumnElement[bool]], share: Hashable | None) -> tuple[Any, ...]:
    """The page query and its parameters; shared by shape when the access conditions can be."""
    return page_statement(req, where, share) if share is not None else (page_query(req, where),)


Step = tuple[Select[Any], dict[str, Any]]  # a statement and its parameters


def _included_by(sources: list[StoredResource], inc: Include, refs_of: RefsOf | None = None, *,
                 arrays: bool = False) -> Step | None:
    """Resources that the page's `inc.source_type` resources reference through `inc.param` (`refs_of`:
    read off the sources' JSON, for sources that have no index rows; `arrays`: see `_pks_in`)."""
    if refs_of is not None and sources and inc.source_type == sources[0].resource_type:
        return _referenced(sources, inc, refs_of)
    pks = [s.pk for s in sources if s.resource_type == inc.source_type]
    if not pks:
        return None
    return _included_by_statement(inc.param, inc.target_type, arrays), {"pks": pks}


def _referenced(sources: list[StoredResource], inc: Include, refs_of: RefsOf) -> Step | None:
    params = params_for(inc.source_type)
    names = [n for n, p in params.items() if p.type == "reference"] if inc.param == "*" else [inc.param]
    keys = sorted({(rtype, rid) for s in sources if s.resource_type == inc.source_type for n in names
                   for rtype, rid, *_ in refs_of(params[n], s.content)
                   if rid is not None and rtype is not None and inc.target_type in (None, rtype)})
    if not keys:
        return None
    stmt = select(*LEAN_COLS).where(tuple_(resource.c.res_type, resource.c.res_id).in_(keys), resource.c.deleted.is_(False))
    return stmt, {}


def _pks_in(column: ColumnElement[int], arrays: bool) -> ColumnElement[bool]:
    """`column` is one of the page's pks, bound as ONE parameter `pks`: with `arrays` (PostgreSQL) an
    array, `column = ANY($1)`; elsewhere an expanding list. SQLAlchemy writes an expanding list's every
    value into the SQL anew at each execution (`$4::BIGINT, $5::BIGINT, ...`): for a page of 200 Tasks
    and its five includes a thousand of them, some 3 ms of Python per view of the lead's desk."""
    if arrays:
        return column == any_(bindparam("pks", type_=ARRAY(BigInteger)))
    return column.in_(bindparam("pks", expanding=True))


@lru_cache(maxsize=256)
def _included_by_statement(param: str, target_type: str | None, arrays: bool = False) -> Select[Any]:
    """`_included_by` with the page's keys as one parameter (`_pks_in`): one statement per include."""
    r = idx_reference.c
    keys = select(r.target_type, r.target_id).where(_pks_in(r.resource_pk, arrays), r.target_id.is_not(None))
    if param != "*":
        keys = keys.where(r.param == param)
    if target_type:
        keys = keys.where(r.target_type == target_type)
    return select(*LEAN_COLS).where(
        tuple_(resource.c.res_type, resource.c.res_id).in_(keys), resource.c.deleted.is_(False)
    )


@lru_cache(maxsize=256)
def _target_types_statement(param: str, arrays: bool = False) -> Select[Any]:
    """The types that the page's `pks` reference through `param` (`*`: any reference parameter)."""
    r = idx_reference.c
    stmt = select(r.target_type).distinct().where(
        _pks_in(r.resource_pk, arrays), r.target_id.is_not(None), r.target_type.is_not(None)
    )
    return stmt.where(r.param == param) if param != "*" else stmt


def _take(found: Any, seen: set[tuple[str, str]], new: list[StoredResource], result: SearchResult,
          max_includes: int) -> bool:
    """Add the `found` resources not yet seen to `new`; True when the includes' limit was reached."""
    for f in found:
        if (f.resource_type, f.id) in seen:
            continue
        if len(result.included) + len(new) >= max_includes:
            result.includes_truncated = True
            return True
        seen.add((f.resource_type, f.id))
        new.append(f)
    return False


def _target_keys(targets: list[StoredResource], inc: Include) -> list[tuple[str, str]]:
    return sorted({(t.resource_type, t.id) for t in targets if inc.target_type in (None, t.resource_type)})


def _referring_to(targets: list[StoredResource], inc: Include) -> Step | None:
    """Resources of `inc.source_type` whose `inc.param` references one of `targets`."""
    keys = _target_keys(targets, inc)
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
    return select(*LEAN_COLS).where(resource.c.pk.in_(pks), resource.c.deleted.is_(False)), {}


# Include steps with the access conditions, the order and a bound LIMIT, by (statement, who asks):
# the conditions depend on who asks only (app/security/guard.py `Restriction`).
_STEPS: dict[Any, Select[Any] | None] = {}  # least recently used first
MAX_STEPS = 256


def _step(base: Select[Any], restrict: Restrict | None, types: tuple[str, ...] | None,
          share: Hashable | None) -> Select[Any] | None:
    """`base` limited to what the asker may see of `types` (None: of any type); built once per `share`
    key when there is one. None when the asker may see nothing of `types`: the statement would find
    nothing, so it is not sent."""
    def build() -> Select[Any] | None:
        visible = _visible(restrict, types)
        return None if never(visible) else base.where(*visible).order_by(resource.c.pk).limit(bindparam("room"))

    return build() if share is None else recently_used(_STEPS, (base, types, share), MAX_STEPS, build)


def _visible(restrict: Restrict | None, types: tuple[str, ...] | None) -> list[ColumnElement[bool]]:
    """The access conditions on included rows of `types`, each under its own type's (None: any type's).
    An include that can return one or two types need not carry every type's conditions: they made its
    statement some fifty conditions and three hundred parameters long."""
    if restrict is None:
        return []
    if types is None:
        return list(restrict(resource, None))
    if len(types) == 1:
        return [resource.c.res_type == types[0], *restrict(resource, types[0])]
    return [or_(*[and_(resource.c.res_type == t, *restrict(resource, t)) for t in types])]


def _types(inc: Include, revinclude: bool, indexed: bool) -> tuple[str, ...] | None:
    """The only types an include step can return, when it is not every type: a `_revinclude`'s source
    type; an `_include`'s target type, or the targets its parameter is declared with (`indexed`: read
    off the index rows, which hold no reference to another type, app/fhir/search/definitions.py)."""
    if revinclude:
        return None if inc.source_type == "*" else (inc.source_type,)
    if inc.target_type:
        return (inc.target_type,)
    param = params_for(inc.source_type).get(inc.param) if indexed and inc.source_type in SUPPORTED_TYPES else None
    return param.targets if param is not None and param.targets else None


async def add_includes(
    session: AsyncSession, result: SearchResult, max_includes: int, restrict: Restrict | None,
    refs_of: RefsOf | None = None, audit: AuditSource | None = None,
) -> None:
    """Add the page's `_include`d and `_revinclude`d resources that the asker may see (`refs_of`: how
    the page's own references are read when its rows have no index rows; `audit`: the AuditEvents
    naming the page, which have none). An `_include` from a few pks keeps the generic plans PostgreSQL
    makes for its statements (`GENERIC_PKS`), and may leave them in force: whatever searches next asks
    for custom plans again."""
    share = _share_key(restrict)
    arrays = session.get_bind().dialect.name == "postgresql"
    seen = {(m.resource_type, m.id) for m in result.matches}
    frontier = list(result.matches)
    req = result.request
    for round_ in range(MAX_ITERATE):
        new: list[StoredResource] = []
        steps = [(_included_by, i) for i in req.include] + [(_referring_to, i) for i in req.revinclude]
        for build, inc in steps:
            if round_ > 0 and not inc.iterate:
                continue
            room = max_includes - len(result.included) - len(new)
            if build is _referring_to and inc.source_type == "AuditEvent":
                await plan_with_values(session)
                keys = _target_keys(frontier, inc)
                found = await audit(keys, inc.param, room + len(seen) + 1) if audit and keys else []
                if _take(found, seen, new, result, max_includes):
                    break
                continue
            own = refs_of if round_ == 0 and refs_of is not None and frontier[0].resource_type == inc.source_type \
                else None
            built = _included_by(frontier, inc, own, arrays=arrays) if build is _included_by else build(frontier, inc)
            if built is None:
                continue
            base, params = built
            if build is _included_by and len(params.get("pks", ())) <= GENERIC_PKS:
                await plan_generically(session)  # by a few pks, then by type and id: see GENERIC_PKS
            else:
                await plan_with_values(session)
            types = _types(inc, build is _referring_to, own is None)
            if types is None and restrict is not None and build is _included_by and own is None:
                # a reference to any type: the types it names here, so that the include carries their
                # conditions alone (PostgreSQL planned every type's OR anew at each view, ~2 ms)
                named = (await session.execute(_target_types_statement(inc.param, arrays), params)).scalars()
                types = tuple(sorted(t for t in named if t in SUPPORTED_TYPES))
                if not types:
                    continue
            # shared only when `base` itself is (an _include's); a _revinclude's keys are in its SQL
            stmt = _step(base, restrict, types, share if params else None)
            if stmt is None:
                continue
            rows = (await session.execute(stmt, {**params, "room": room + len(seen) + 1})).all()
            if _take(await stored(session, rows), seen, new, result, max_includes):
                break
        result.included.extend(new)
        if not new or result.includes_truncated:
            break
        frontier = new
