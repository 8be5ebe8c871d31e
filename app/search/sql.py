"""Compile a `SearchRequest` into SQL over the resource and search-index tables.

A selective criterion (a reference, `_id`, an identifier) becomes `pk IN (SELECT resource_pk FROM
idx_* WHERE res_type = ? AND param = ? AND value...)` and drives the query from its index; the others
become correlated EXISTS probes through the `resource_pk` indexes, and negations (`:not`,
`:missing=true`) NOT EXISTS anti-joins. Values of one parameter are ORed, parameters ANDed
(https://hl7.org/fhir/R4/search.html#combining). The same SQL runs on SQLite and PostgreSQL;
`app/fhir/search/matcher.py` evaluates the same criteria in memory, so keep the two in step (tests/api/test_search_parity.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    Table,
    and_,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import AsBoolean, BooleanClauseList, False_, Grouping
from sqlalchemy.sql.visitors import InternalTraversal

from app.fhir.search.criteria import Criterion
from app.fhir.search.dates import Ops, instant_condition, prefix_condition
from app.fhir.search.definitions import SUPPORTED_TYPES, params_for
from app.fhir.search.extract import normalize
from app.fhir.search.params import SearchRequest
from app.fhir.search.values import RefValue, TokenValue
from app.storage.contents import LEAN_COLS
from app.storage.tables import idx_date, idx_reference, idx_string, idx_token, resource

SQL_OPS = Ops(and_, or_, not_)
_TABLES = {"token": idx_token, "uri": idx_token, "string": idx_string, "date": idx_date, "reference": idx_reference}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def token_cond(system_col: Any, code_col: Any, v: TokenValue) -> ColumnElement[bool]:
    conds = []
    if v.match_system:
        conds.append(system_col.is_(None) if v.system is None else system_col == v.system)
    if v.code is not None:
        conds.append(code_col == v.code)
    return and_(*conds) if conds else true()


def _ref_cond(t: Any, v: RefValue, crit: Criterion) -> ColumnElement[bool]:
    if v.url is not None:
        return t.c.url == v.url  # type: ignore[no-any-return]
    conds = [t.c.target_id == v.id]
    if v.type is not None:
        conds.append(t.c.target_type == v.type)
    if crit.type_hint is not None:
        conds.append(t.c.target_type == crit.type_hint)
    return and_(*conds)


def _value_cond(t: Any, crit: Criterion, v: Any) -> ColumnElement[bool]:
    if crit.kind == "token":
        return token_cond(t.c.system, t.c.code, v)
    if crit.kind == "uri":
        return t.c.code == v  # type: ignore[no-any-return]
    if crit.kind == "string":
        if crit.modifier == "exact":
            return t.c.exact == v  # type: ignore[no-any-return]
        pattern = _like_escape(normalize(v))
        pattern = f"%{pattern}%" if crit.modifier == "contains" else f"{pattern}%"
        return t.c.norm.like(pattern, escape="\\")  # type: ignore[no-any-return]
    if crit.kind == "date":
        return prefix_condition(v.prefix, t.c.low, t.c.high, v.low, v.high, SQL_OPS)  # type: ignore[no-any-return]
    return _ref_cond(t, v, crit)


# Building SQLAlchemy expressions costs more CPU than running these short queries, so the parts that
# do not depend on the search values are built once and shared (expressions are immutable).
@lru_cache(maxsize=4096)
def _index_pks_base(t: Any, rtype: str, name: str) -> Select[Any]:
    return select(t.c.resource_pk).where(t.c.res_type == rtype, t.c.param == name).correlate(None)


@lru_cache(maxsize=4096)
def _param_is(t: Any, name: str) -> ColumnElement[bool]:
    return t.c.param == name  # type: ignore[no-any-return]


@lru_cache(maxsize=1024)
def _live_of_type(res: Table, rtype: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return res.c.res_type == rtype, res.c.deleted.is_(False)


@lru_cache(maxsize=256)
def _identified(types: tuple[str, ...]) -> Select[Any]:
    """Keys of the live resources of `types` with an `identifier` (the value condition is added per search)."""
    tok = idx_token.c
    return (
        select(resource.c.res_type, resource.c.res_id)
        .join(idx_token, tok.resource_pk == resource.c.pk)
        .where(tok.res_type.in_(types), tok.param == "identifier", resource.c.deleted.is_(False))
        .correlate(None)
    )


def _index_pks(t: Any, rtype: str, name: str, *conds: Any) -> Select[Any]:
    """`resource_pk` of the index rows of one parameter. Subqueries use the plain tables (building an
    alias costs more than running the whole search) and never correlate: SQL scoping keeps nested
    uses of the same table apart."""
    base = _index_pks_base(t, rtype, name)
    return base.where(*conds) if conds else base


def _has_rows(res: Table, t: Table, name: str, cond: Any = None, rtype: str | None = None) -> ColumnElement[bool]:
    """Correlated EXISTS, used under NOT (anti-join on the resource_pk index). With `rtype` (a positive
    criterion), PostgreSQL is also told the index rows' type, which the rows of `res` have anyway (see
    `ForPostgres`)."""
    where = [t.c.resource_pk == res.c.pk, _param_is(t, name)]
    if rtype is not None:
        where.append(_of_type_for_postgres(t, rtype))
    if cond is not None:
        where.append(cond(t))
    found: ColumnElement[bool] = exists().where(*where).correlate(res)
    return found


class ForPostgres(ColumnElement[bool]):
    """A condition that holds for every row it is added to, sent to PostgreSQL only, for its planner.

    A search for Communications of one category, which no reference or identifier drives, probed each
    candidate's token rows (`EXISTS ... WHERE resource_pk = pk AND param = 'category' AND code = ...`);
    PostgreSQL made that a semi-join and, with no index leading on `param`, read the whole idx_token
    table for it (1.2 ms of the MASH page's list, at 7,000 token rows; it grows with every record
    stored). Told the rows' type as well, it reads just that type's category rows from
    `ix_idx_token_lookup` (0.1 ms). Only such searches are: one that a reference drives (a child's
    Tasks) was then planned from every open Task's status rows instead (27 ms instead of 3). SQLite is
    not told: it has no statistics to choose with, and would then take that index for each candidate's
    probe."""

    inherit_cache = True
    _traverse_internals: list[tuple[str, InternalTraversal]] = [  # noqa: RUF012 (SQLAlchemy's own type)
        ("condition", InternalTraversal.dp_clauseelement)]
    type = Boolean()

    def __init__(self, condition: ColumnElement[bool]) -> None:
        self.condition = condition


@compiles(ForPostgres)
def _holds(_element: ForPostgres, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "1"  # true (SQLite compares a condition without an operator of its own with 1: `1 = 1`)


@compiles(ForPostgres, "postgresql")
def _condition(element: ForPostgres, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.condition, **kw))


@lru_cache(maxsize=4096)
def _of_type_for_postgres(t: Any, rtype: str) -> ForPostgres:
    return ForPostgres(t.c.res_type == rtype)


def _identifier_pks(rtype: str, crit: Criterion) -> Any:
    """`ref:identifier=sys|val`: the Reference carries the identifier, or points at a resource that does.
    A UNION keeps both halves index-driven (an OR would force a scan)."""
    assert crit.param is not None
    types = crit.param.targets or tuple(t for t in SUPPORTED_TYPES if "identifier" in params_for(t))
    r, tok = idx_reference.c, idx_token.c
    branches = []
    for v in crit.values:
        branches.append(_index_pks(idx_reference, rtype, crit.name, token_cond(r.ident_system, r.ident_value, v)))
        pointed = _identified(tuple(types)).where(token_cond(tok.system, tok.code, v))
        branches.append(_index_pks(idx_reference, rtype, crit.name, tuple_(r.target_type, r.target_id).in_(pointed)))
    return union_all(*branches)


def _chain_pks(rtype: str, crit: Criterion) -> Select[Any]:
    """`ref.param=value` / `ref:Type.param=value`: the referenced resource matches the chained criterion."""
    targets = []
    for ttype, chained in crit.chain:
        targets.append(
            select(resource.c.res_type, resource.c.res_id)
            .where(resource.c.res_type == ttype, resource.c.deleted.is_(False),
                   compile_criterion(resource, ttype, chained))
            .correlate(None)
        )
    r = idx_reference.c
    stmt = _index_pks(idx_reference, rtype, crit.name)
    if crit.type_hint is not None:
        stmt = stmt.where(r.target_type == crit.type_hint)
    target_keys = targets[0] if len(targets) == 1 else union_all(*targets)
    return stmt.where(tuple_(r.target_type, r.target_id).in_(target_keys))


def selective(crit: Criterion) -> bool:
    """Criteria that usually narrow a search to a handful of rows: a reference (by id, identifier or
    chain), `_id`, or an identifier. These drive the query; the others are checked per candidate."""
    if crit.modifier in ("not", "missing"):
        return False
    return crit.kind in ("reference", "_id") or crit.name == "identifier" or crit.modifier == "exact"


def compile_criterion(res: Table, rtype: str, crit: Criterion, *, drive: bool = True,
                      typed_probe: bool = False) -> ColumnElement[bool]:
    """The WHERE condition on `res` (the `resource` table, holding rows of `rtype`) for one criterion.

    `drive=True` gives `pk IN (index rows)`, which SQLite evaluates first and then probes the resource
    rows; `drive=False` gives a correlated EXISTS probed per candidate row through the `resource_pk`
    index. PostgreSQL plans both as the same semi-join; SQLite cannot choose, so `where_clause` lets only
    selective criteria drive (an unselective IN would materialise, e.g., every active Flag).
    `typed_probe`: the EXISTS also names the rows' type on PostgreSQL (`ForPostgres`), for a search that
    nothing else drives."""
    if crit.kind == "_id":
        cond = res.c.res_id.in_(list(crit.values))
        return not_(cond) if crit.modifier == "not" else cond
    if crit.kind == "_lastUpdated":
        col = res.c.last_updated
        return or_(*[instant_condition(v.prefix, col, v.low, v.high, SQL_OPS) for v in crit.values])
    table = _TABLES[crit.kind]
    if crit.missing is not None:
        if crit.missing:
            return not_(_has_rows(res, table, crit.name))
        return res.c.pk.in_(_index_pks(table, rtype, crit.name)) if drive else _has_rows(res, table, crit.name)
    if crit.chain:
        return res.c.pk.in_(_chain_pks(rtype, crit))
    if crit.modifier == "identifier":
        return res.c.pk.in_(_identifier_pks(rtype, crit))

    def values(t: Any) -> ColumnElement[bool]:
        return or_(*[_value_cond(t, crit, v) for v in crit.values])

    if crit.modifier == "not":
        return not_(_has_rows(res, table, crit.name, values))
    if not drive:
        return _has_rows(res, table, crit.name, values, rtype if typed_probe else None)
    return res.c.pk.in_(_index_pks(table, rtype, crit.name, values(table)))


def _drives_from_index(crit: Criterion) -> bool:
    """A criterion compiled to `pk IN (index rows of the type)`: it already keeps other types out."""
    return selective(crit) and crit.kind != "_id"


def where_clause(req: SearchRequest, res: Table) -> list[ColumnElement[bool]]:
    of_type, live = _live_of_type(res, req.resource_type)
    conds: list[ColumnElement[bool]] = [live]
    # With an index-driven criterion the type condition is redundant, and harmful on SQLite: without
    # ANALYZE statistics its planner takes `res_type = ?` as selective, walks every resource of the
    # type through ix_resource_type_updated and tests the IN per row, so a duplicate-flag check or a
    # CP-IS search grew with the number of Flags (120 us at 1,500 Flags, 20 us driven by the IN).
    driven = any(_drives_from_index(c) for c in req.criteria)
    if not driven:
        conds.insert(0, of_type)
    # nothing drives it from an index: PostgreSQL may drive it from its probes' index rows of the type
    conds.extend(compile_criterion(res, req.resource_type, c, drive=selective(c), typed_probe=not driven)
                 for c in req.criteria)
    return conds


def never(conds: Iterable[ColumnElement[bool]]) -> bool:
    """Whether `conds`, ANDed, hold for no row whatever the data: one of them is a constant false (the
    access policy's `false()` for a type the asker may see nothing of). A statement with such a WHERE
    clause returns nothing, so it need not be sent."""
    return any(_constant_false(c) for c in conds)


def _constant_false(cond: Any) -> bool:
    if isinstance(cond, False_):
        return True
    if isinstance(cond, AsBoolean):  # `false` where a condition stands alone; `is_false` would negate it
        return cond.operator is operators.is_true and _constant_false(cond.element)
    if isinstance(cond, Grouping):
        return _constant_false(cond.element)
    if isinstance(cond, BooleanClauseList) and cond.clauses:
        if cond.operator is operators.and_:
            return any(_constant_false(c) for c in cond.clauses)
        if cond.operator is operators.or_:
            return all(_constant_false(c) for c in cond.clauses)
    return False


def _sort_key(req: SearchRequest, res: Table, name: str, desc: bool) -> Any:
    """R4: with several values, ascending sorts by the lowest, descending by the highest
    (https://hl7.org/fhir/R4/search.html#sort). Dates sort by the start of their range, as HAPI
    does, so that open-ended Periods still sort by when they began."""
    if name == "_id":
        return res.c.res_id
    if name == "_lastUpdated":
        return res.c.last_updated
    param = params_for(req.resource_type)[name]
    t = _TABLES[param.type]
    col = t.c.low if param.type == "date" else t.c.norm if param.type == "string" else t.c.code
    agg = func.max(col) if desc else func.min(col)
    return select(agg).where(t.c.resource_pk == res.c.pk, t.c.param == name).correlate(res).scalar_subquery()


def page_query(req: SearchRequest, extra: Sequence[ColumnElement[bool]] = ()) -> Select[Any]:
    """One page in a stable order; `extra` holds further conditions on `resource` (access policy). Its
    rows become records through `app.storage.contents.stored` (PostgreSQL sends them without content)."""
    res = resource
    stmt = select(*LEAN_COLS).where(*where_clause(req, res), *extra)
    order = []
    for name, desc in req.sort:
        key = _sort_key(req, res, name, desc)
        # resources without a value sort last in both directions (SQLite >= 3.30 and PostgreSQL)
        order.append((key.desc() if desc else key.asc()).nulls_last())
    order.append(res.c.pk.asc())  # a stable tiebreak: pages never overlap or skip
    return stmt.order_by(*order).limit(req.count).offset(req.offset)


def count_query(req: SearchRequest, extra: Sequence[ColumnElement[bool]] = ()) -> Select[Any]:
    res = resource
    return select(func.count(literal(1))).select_from(res).where(*where_clause(req, res), *extra)
