"""AuditEvent read, search, `_history`, `_revinclude=AuditEvent:...` of other types' searches and the
"records withheld" notice, answered from the audit trail's own table (`audit_event`, with its reference
rows `audit_event_ref`): AuditEvents are kept there only, never as generic resources with index rows.

A search runs in one of two ways, with the same answers:

- **In SQL** when every criterion has an exact twin on the table: `patient`, `entity` and `agent` by
  `Type/id` and `type` and `subtype` by code or by system and code (the reference and coding rows), `date` (the `occurred` column: the element is an instant of millisecond
  precision, so its range is [occurred, occurred + 1 ms)), `action` and `outcome` by code, `_id`; sorted by
  `date` or `_id`. The page, its total and `_summary=count` are then one statement each, driven by the
  table's indexes (`AuditEvent?patient=...&_sort=-date` reads that patient's rows only).
- **In memory for the rest**: the criteria that have a twin narrow the rows in SQL, and every other
  criterion (modifiers, chains, string and other token parameters, `_lastUpdated`), a scope's
  qualifiers and other sort keys are evaluated on the AuditEvent JSON by the search matcher
  (app/fhir/search/matcher.py), which reads values with the very extractors the index tables were
  filled with. The page and total are then counted off the matching rows.

Who sees what follows `policy.visibility` as `search_scope.py` does for other types: roles without
AuditEvent read reach see nothing, a token's scopes narrow it, and a restricted AuditEvent shows only to
cleared roles and the organisation it is kept as written by (the table's `restricted` and
`created_by_org` columns). `_include` reads its references off the page's JSON; `_revinclude` and the
`:iterate` rounds run as for any other search.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, not_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.criteria import Criterion
from app.fhir.search.dates import parse_range, prefix_condition
from app.fhir.search.definitions import index_values, params_for
from app.fhir.search.matcher import matches
from app.fhir.search.params import SearchRequest
from app.fhir.search.results import SearchResult
from app.search.executor import AuditSource, Restrict, add_includes
from app.search.sql import SQL_OPS, never
from app.security.policy import CLEARED_ROLES, READ, Reach
from app.security.principal import ROLES, Principal
from app.security.scopes import qualifier_criteria
from app.security.search_scope import named_patients
from app.storage import buffer
from app.storage.audit_tables import CODED_PARAMS, LINKED_PARAMS, audit_event, audit_event_ref, coding_key
from app.storage.db import plan_with_values
from app.storage.repository import CURRENT_BY_ID, row_to_stored
from app.stored import StoredResource, VersionRecord

EVENT = "AuditEvent"
MS = timedelta(milliseconds=1)
_E = audit_event.c
_COLUMNS = (_E.seq, _E.event_id, _E.recorded, _E.created_by_org, _E.content)
_CODE_COLUMNS = {"action": _E.action, "outcome": _E.outcome}
_SQL_SORT = {"date": _E.occurred, "_id": _E.event_id}
BATCH = 1000  # rows fetched at a time when criteria are evaluated in memory


def _stored(row: Any) -> StoredResource:
    content = row.content
    stamp = (content.get("meta") or {}).get("lastUpdated")
    rng = parse_range(stamp) if isinstance(stamp, str) else None
    return StoredResource(int(row.seq), EVENT, row.event_id, 1, rng[0] if rng else row.recorded, False, content,
                          row.created_by_org)


async def get(session: AsyncSession, event_id: str) -> StoredResource | None:
    """One AuditEvent by id (its only version is 1)."""
    await buffer.flush(session)
    row = (await session.execute(select(*_COLUMNS).where(_E.event_id == event_id))).first()
    return _stored(row) if row else None


class _EndOfMs:
    """`recorded + 1 ms`, the end of the element's range, in the comparisons `prefix_condition` makes of it."""

    def __init__(self, col: Any) -> None:
        self.col = col

    def __gt__(self, other: datetime) -> Any:
        return self.col > other - MS

    def __le__(self, other: datetime) -> Any:
        return self.col <= other - MS


def _ref_condition(crit: Criterion) -> ColumnElement[bool] | None:
    assert crit.param is not None
    refs = []
    for v in crit.values:
        rtype = v.type or crit.type_hint or (crit.param.targets[0] if len(crit.param.targets) == 1 else None)
        if v.url is not None or v.id is None or rtype is None:
            return None
        if not (crit.type_hint and rtype != crit.type_hint) and not (crit.param.targets and rtype not in crit.param.targets):
            refs.append(f"{rtype}/{v.id}")
    if not refs:
        return false()
    r = audit_event_ref.c
    return _E.event_id.in_(select(r.event_id).where(r.param == crit.name, r.ref.in_(sorted(set(refs)))))


def _coded_condition(crit: Criterion) -> ColumnElement[bool] | None:
    """`type`/`subtype` by code or by system and code, off the coding rows (None: a system alone)."""
    keys = set()
    for v in crit.values:
        if v.code is None:
            return None
        keys.add((crit.name + "|", coding_key(v.system, v.code)) if v.match_system else (crit.name, v.code))
    r = audit_event_ref.c
    return _E.event_id.in_(select(r.event_id).where(or_(*[and_(r.param == p, r.ref == k) for p, k in sorted(keys)])))


def column_condition(crit: Criterion) -> ColumnElement[bool] | None:
    """The criterion as a condition on the table, or None when only the JSON can answer it exactly."""
    if crit.missing is not None or crit.chain or crit.modifier is not None:
        return None
    if crit.kind == "_id":
        return _E.event_id.in_(sorted(crit.values))
    if crit.kind == "date" and crit.name == "date":
        end = _EndOfMs(_E.occurred)
        return or_(*[prefix_condition(v.prefix, _E.occurred, end, v.low, v.high, SQL_OPS) for v in crit.values])
    if crit.kind == "reference" and crit.name in LINKED_PARAMS:
        return _ref_condition(crit)
    if crit.kind == "token" and crit.name in _CODE_COLUMNS:
        if any(v.match_system or v.code is None for v in crit.values):
            return None
        return _CODE_COLUMNS[crit.name].in_(sorted({v.code for v in crit.values}))
    if crit.kind == "token" and crit.name in CODED_PARAMS:
        return _coded_condition(crit)
    return None


Alternatives = list[list[Criterion]] | None  # a scope's qualifiers, ORed; None: no narrowing


def visibility(principal: Principal | None) -> tuple[list[ColumnElement[bool]], Alternatives]:
    """The SQL conditions and the scope qualifiers that keep to what `principal` may see."""
    if principal is None:
        return [], None
    if READ[EVENT][ROLES.index(principal.role)] is not Reach.ALL:
        return [false()], None
    alternatives = principal.scopes.search_constraints(EVENT, context=principal.context)
    if alternatives is None:
        return [false()], None
    scoped: Alternatives = None
    if () not in alternatives:
        scoped = [c for params in alternatives if (c := qualifier_criteria(EVENT, params, principal.base)) is not None]
        if not scoped:
            return [false()], None
    conds: list[ColumnElement[bool]] = []
    if principal.role not in CLEARED_ROLES:
        ours = _E.created_by_org == principal.org if principal.org is not None else false()
        conds.append(or_(not_(_E.restricted), ours))
    return conds, scoped


def _resolver(session: AsyncSession) -> Any:
    """The current content of a referenced resource, for chains and `:identifier` (None: unknown or deleted)."""
    async def resolve(rtype: str, rid: str) -> dict[str, Any] | None:
        row = (await session.execute(CURRENT_BY_ID, {"res_type": rtype, "res_id": rid})).first()
        found = row_to_stored(row) if row else None
        return None if found is None or found.deleted else found.content
    return resolve


async def _accepted(stored: StoredResource, memory: list[Criterion], scoped: Alternatives, resolve: Any) -> bool:
    if not await matches(EVENT, stored.content, memory, resolve):
        return False
    return scoped is None or any([await matches(EVENT, stored.content, alt, resolve) for alt in scoped])


def _sort_value(stored: StoredResource, name: str, desc: bool, base: str) -> Any:
    """The value a row sorts by (R4: ascending by its lowest value, descending by its highest)."""
    if name == "_lastUpdated":
        return stored.last_updated
    if name == "_id":
        return stored.id
    param = params_for(EVENT)[name]
    pick = 1 if param.type in ("token", "uri") else 0
    values = [row[pick] for row in index_values(param, stored.content, base) if row[pick] is not None]
    return (max if desc else min)(values) if values else None


def _sorted(rows: list[StoredResource], sort: list[tuple[str, bool]], base: str) -> list[StoredResource]:
    """Stable sorts from the last key to the first; rows without a value last in both directions."""
    for name, desc in reversed(sort):
        keyed = [(_sort_value(r, name, desc, base), r) for r in rows]
        present = sorted((kv for kv in keyed if kv[0] is not None), key=lambda kv: kv[0], reverse=desc)
        rows = [r for _, r in present] + [r for v, r in keyed if v is None]
    return rows


async def _in_memory(session: AsyncSession, stmt: Select[Any], memory: list[Criterion], scoped: Alternatives,
                     sort: list[tuple[str, bool]], base: str) -> list[StoredResource]:
    """Every row `stmt` selects that the remaining criteria and the scope accept, in the search's order."""
    found: list[StoredResource] = []
    resolve = _resolver(session)
    last = 0
    while True:
        rows = (await session.execute(stmt.where(_E.seq > last).order_by(_E.seq).limit(BATCH))).all()
        for row in rows:
            stored = _stored(row)
            if await _accepted(stored, memory, scoped, resolve):
                found.append(stored)
        if len(rows) < BATCH:
            break
        last = int(rows[-1].seq)
    return _sorted(found, sort, base) if sort else found


async def search(session: AsyncSession, req: SearchRequest, principal: Principal | None, *, base: str,
                 max_includes: int, restrict: Restrict | None) -> SearchResult:
    """`req` (an AuditEvent search) answered from the audit trail, as `principal` may see it."""
    await buffer.flush(session)
    conds, scoped = visibility(principal)
    memory: list[Criterion] = []
    for crit in req.criteria:
        cond = column_condition(crit)
        if cond is None:
            memory.append(crit)
        else:
            conds.append(cond)
    if never(conds):  # no AuditEvent the asker may see can match: nothing to ask the database
        return SearchResult(req, [], None if req.total == "none" and req.summary != "count" else 0)
    await plan_with_values(session)
    if memory or scoped is not None or any(name not in _SQL_SORT for name, _ in req.sort):
        rows = await _in_memory(session, select(*_COLUMNS).where(*conds), memory, scoped, req.sort, base)
        total: int | None = len(rows)
        page = rows[req.offset:req.offset + req.count] if req.summary != "count" else []
    else:
        counted = select(func.count(literal(1))).select_from(audit_event).where(*conds)
        if req.summary == "count":
            return SearchResult(req, [], int((await session.execute(counted)).scalar_one()))
        order = [(_SQL_SORT[name].desc() if desc else _SQL_SORT[name].asc()) for name, desc in req.sort]
        stmt = select(*_COLUMNS).where(*conds).order_by(*order, _E.seq).limit(req.count).offset(req.offset)
        page = [_stored(r) for r in (await session.execute(stmt)).all()] if req.count > 0 else []
        if req.count > 0 and len(page) < req.count and (page or req.offset == 0):
            total = req.offset + len(page)
        else:
            total = int((await session.execute(counted)).scalar_one())
    if req.summary == "count":
        return SearchResult(req, [], total)
    result = SearchResult(req, page, None if req.total == "none" else total)
    if page and (req.include or req.revinclude):
        await add_includes(session, result, max_includes, restrict, refs_of=lambda p, c: index_values(p, c, base),
                           audit=revincluded(session, principal))
    return result


def revincluded(session: AsyncSession, principal: Principal | None) -> AuditSource:
    """`referring_to` for this session and asker, as the search executor takes it."""
    async def source(keys: list[tuple[str, str]], param: str, limit: int) -> list[StoredResource]:
        return await referring_to(session, principal, keys, param, limit)
    return source


async def referring_to(session: AsyncSession, principal: Principal | None, keys: Iterable[tuple[str, str]],
                       param: str, limit: int) -> list[StoredResource]:
    """Up to `limit` AuditEvents whose `param` (`*`: any reference parameter) names one of `keys`
    (`(type, id)`), that `principal` may see, oldest first: `_revinclude=AuditEvent:...` of another
    type's search, read off the reference rows."""
    if param != "*" and param not in LINKED_PARAMS:
        return []
    conds, scoped = visibility(principal)
    if never(conds):
        return []
    r = audit_event_ref.c
    linked = select(r.event_id).where(r.ref.in_(sorted({f"{t}/{i}" for t, i in keys})),
                                      r.param.in_(LINKED_PARAMS) if param == "*" else r.param == param)
    stmt = select(*_COLUMNS).where(*conds, _E.event_id.in_(linked))
    if scoped is None:
        return [_stored(row) for row in (await session.execute(stmt.order_by(_E.seq).limit(limit))).all()]
    return (await _in_memory(session, stmt, [], scoped, [], ""))[:limit]


async def history(session: AsyncSession, principal: Principal | None, event_id: str | None, *,
                  since: datetime | None, at: datetime | None, limit: int, offset: int,
                  ) -> tuple[list[VersionRecord], int]:
    """AuditEvent `_history` (of one event, or of the type) that `principal` may see, newest first:
    each event is its one version, created when it was recorded (`since`/`at` on that time)."""
    await buffer.flush(session)
    conds, scoped = visibility(principal)
    if event_id is not None:
        conds.append(_E.event_id == event_id)
    if since is not None:
        conds.append(_E.recorded >= since)
    if at is not None:
        conds.append(_E.recorded <= at)
    order = (_E.recorded.desc(), _E.seq.desc())
    if never(conds):
        return [], 0
    if scoped is None:
        total = int((await session.execute(select(func.count(literal(1))).select_from(audit_event)
                                           .where(*conds))).scalar_one())
        stmt = select(*_COLUMNS).where(*conds).order_by(*order).limit(limit).offset(offset)
        page = [_stored(row) for row in (await session.execute(stmt)).all()] if limit > 0 else []
    else:
        found = await _in_memory(session, select(*_COLUMNS).where(*conds), [], scoped, [], "")
        found.sort(key=lambda s: (s.last_updated, s.pk), reverse=True)
        total, page = len(found), found[offset:offset + limit]
    return [VersionRecord(EVENT, s.id, 1, s.last_updated, "POST", s.content) for s in page], total


async def withholds(session: AsyncSession, principal: Principal, req: SearchRequest,
                    shown_patients: Iterable[str]) -> bool:
    """`search_scope.withholds` for AuditEvent searches, read off the trail: a restricted AuditEvent
    within the principal's reach and scopes, not kept as written by its organisation, about a patient
    the search names (`patient`) or a patient an event shown is about (`shown_patients`). No number, as for
    other types."""
    if principal.role in CLEARED_ROLES or READ[EVENT][ROLES.index(principal.role)] is not Reach.ALL:
        return False
    if principal.scopes.search_constraints(EVENT, context=principal.context) is None:
        return False
    _, scoped = visibility(principal)
    not_ours = (or_(_E.created_by_org.is_(None), _E.created_by_org != principal.org)
                if principal.org is not None else true())
    conds: list[ColumnElement[bool]] = [_E.restricted, not_ours]
    memory: list[Criterion] = []
    named = named_patients(req)
    for crit in named:
        cond = column_condition(crit)
        if cond is None:
            memory.append(crit)
        else:
            conds.append(cond)
    if not named:
        refs = sorted(set(shown_patients))
        if not refs:
            return False
        r = audit_event_ref.c
        conds.append(_E.event_id.in_(select(r.event_id).where(r.param == "patient", r.ref.in_(refs))))
    stmt = select(*_COLUMNS).where(*conds)
    await plan_with_values(session)
    if not memory and scoped is None:
        return (await session.execute(stmt.limit(1))).first() is not None
    return bool(await _in_memory(session, stmt, memory, scoped, [], ""))
