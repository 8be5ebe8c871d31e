"""Compile a `SearchRequest` into SQL over the resource and search-index tables.

Every criterion becomes an EXISTS over its index table, correlated with the resource row; values
of one parameter are ORed, parameters ANDed (https://hl7.org/fhir/R4/search.html#combining).
The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, or_, select, true
from sqlalchemy.sql.selectable import NamedFromClause

from app.fhir.search.extract import normalize
from app.fhir.search.params import Criterion, DateValue, RefValue, SearchRequest, TokenValue
from app.fhir.search.definitions import params_for
from app.storage.tables import idx_date, idx_reference, idx_string, idx_token, resource


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _token_cond(t: Any, v: TokenValue) -> ColumnElement[bool]:
    conds = []
    if v.match_system:
        conds.append(t.c.system.is_(None) if v.system is None else t.c.system == v.system)
    if v.code is not None:
        conds.append(t.c.code == v.code)
    return and_(*conds) if conds else true()


def _date_cond(lo_col: Any, hi_col: Any, v: DateValue) -> ColumnElement[bool]:
    eq = and_(lo_col >= v.low, hi_col <= v.high)
    p = v.prefix
    if p == "eq":
        return eq
    if p == "ne":
        return not_(eq)
    if p == "gt":
        return hi_col > v.high
    if p == "lt":
        return lo_col < v.low
    if p == "ge":
        return or_(hi_col > v.high, eq)
    if p == "le":
        return or_(lo_col < v.low, eq)
    if p == "sa":
        return lo_col >= v.high
    if p == "eb":
        return hi_col <= v.low
    # ap: within 10% of the gap to now, at least a day (R4 leaves "approximately" to the server)
    slack = max(timedelta(days=1), (v.high - v.low) * 0.1)
    return and_(hi_col > v.low - slack, lo_col < v.high + slack)


def _rebind(cond: ColumnElement[bool], table: Any, alias: Any) -> ColumnElement[bool]:
    from sqlalchemy.sql.util import ClauseAdapter

    return ClauseAdapter(alias).traverse(cond)  # type: ignore[no-any-return]


def _ref_value_cond(r: Any, v: RefValue, crit: Criterion) -> ColumnElement[bool]:
    if v.url is not None:
        return r.c.url == v.url
    conds = [r.c.target_id == v.id]
    if v.type is not None:
        conds.append(r.c.target_type == v.type)
    elif crit.chain_types:
        conds.append(r.c.target_type.in_(crit.chain_types))
    return and_(*conds)


def _identifier_cond(res: NamedFromClause, crit: Criterion, v: TokenValue) -> ColumnElement[bool]:
    """`ref:identifier=sys|val`: the Reference carries the identifier, or points at a resource that does."""
    r = idx_reference.alias()
    own = []
    if v.match_system:
        own.append(r.c.ident_system.is_(None) if v.system is None else r.c.ident_system == v.system)
    own.append(r.c.ident_value == v.code)
    target = resource.alias()
    tok = idx_token.alias()
    pointed = (
        select(target.c.res_id)
        .join(tok, tok.c.resource_pk == target.c.pk)
        .where(
            target.c.res_type == r.c.target_type,
            target.c.deleted.is_(False),
            tok.c.param == "identifier",
            _rebind(_token_cond(idx_token, v), idx_token, tok),
        )
    )
    return exists().where(
        r.c.resource_pk == res.c.pk,
        r.c.param == crit.name,
        or_(and_(*own), r.c.target_id.in_(pointed)),
    )


def compile_criterion(res: NamedFromClause, crit: Criterion) -> ColumnElement[bool]:
    if crit.kind == "_id":
        ids = [v.code for v in crit.values]
        cond = res.c.res_id.in_(ids)
        return not_(cond) if crit.modifier == "not" else cond
    if crit.kind == "_lastUpdated":
        return or_(*[_instant_cond(res.c.last_updated, v) for v in crit.values])
    table = {"token": idx_token, "uri": idx_token, "string": idx_string, "date": idx_date, "reference": idx_reference}[crit.kind]
    if crit.missing is not None:
        t = table.alias()
        has = exists().where(t.c.resource_pk == res.c.pk, t.c.param == crit.name)
        return not_(has) if crit.missing else has
    if crit.chain is not None:
        r = idx_reference.alias()
        target = resource.alias()
        sub = select(target.c.res_id).where(
            target.c.res_type == r.c.target_type,
            target.c.deleted.is_(False),
            compile_criterion(target, crit.chain),
        )
        return exists().where(
            r.c.resource_pk == res.c.pk,
            r.c.param == crit.name,
            r.c.target_type.in_(crit.chain_types),
            r.c.target_id.in_(sub),
        )
    if crit.kind == "reference" and crit.modifier == "identifier":
        return or_(*[_identifier_cond(res, crit, v) for v in crit.values])
    t = table.alias()
    if crit.kind in ("token", "uri"):
        value_conds = [_rebind(_token_cond(idx_token, v), idx_token, t) for v in crit.values]
    elif crit.kind == "string":
        if crit.modifier == "exact":
            value_conds = [t.c.exact == v for v in crit.values]
        elif crit.modifier == "contains":
            value_conds = [t.c.norm.like(f"%{_like_escape(normalize(v))}%", escape="\\") for v in crit.values]
        else:
            value_conds = [t.c.norm.like(f"{_like_escape(normalize(v))}%", escape="\\") for v in crit.values]
    elif crit.kind == "date":
        value_conds = [_date_cond(t.c.low, t.c.high, v) for v in crit.values]
    else:
        value_conds = [_ref_value_cond(t, v, crit) for v in crit.values]
    cond = exists().where(t.c.resource_pk == res.c.pk, t.c.param == crit.name, or_(*value_conds))
    return not_(cond) if crit.modifier == "not" else cond


def _instant_cond(col: Any, v: DateValue) -> ColumnElement[bool]:
    """`_lastUpdated` is a point in time, not a range."""
    inside = and_(col >= v.low, col < v.high)
    p = v.prefix
    if p == "eq":
        return inside
    if p == "ne":
        return not_(inside)
    if p in ("gt", "sa"):
        return col >= v.high
    if p in ("lt", "eb"):
        return col < v.low
    if p == "ge":
        return col >= v.low
    if p == "le":
        return col < v.high
    slack = max(timedelta(days=1), (v.high - v.low) * 0.1)
    return and_(col >= v.low - slack, col < v.high + slack)


def where_clause(req: SearchRequest, res: NamedFromClause) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [res.c.res_type == req.resource_type, res.c.deleted.is_(False)]
    conds.extend(compile_criterion(res, c) for c in req.criteria)
    return conds


def _sort_key(req: SearchRequest, res: NamedFromClause, name: str, desc: bool) -> Any:
    if name == "_id":
        return res.c.res_id
    if name == "_lastUpdated":
        return res.c.last_updated
    param = params_for(req.resource_type)[name]
    if param.type == "date":
        t = idx_date.alias()
        col = func.max(t.c.high) if desc else func.min(t.c.low)
    elif param.type == "string":
        t = idx_string.alias()
        col = func.max(t.c.norm) if desc else func.min(t.c.norm)
    else:
        t = idx_token.alias()
        col = func.max(t.c.code) if desc else func.min(t.c.code)
    return select(col).where(t.c.resource_pk == res.c.pk, t.c.param == name).scalar_subquery()


def page_query(req: SearchRequest) -> Select[Any]:
    res = resource.alias("r")
    stmt = select(
        res.c.pk, res.c.res_type, res.c.res_id, res.c.version_id, res.c.last_updated, res.c.deleted, res.c.content
    ).where(*where_clause(req, res))
    order = []
    for name, desc in req.sort:
        key = _sort_key(req, res, name, desc)
        # NULLs (no value) sort last in both directions, on both databases
        order.append((key.is_(None)).asc())
        order.append(key.desc() if desc else key.asc())
    order.append(res.c.pk.asc())
    return stmt.order_by(*order).limit(req.count).offset(req.offset)


def count_query(req: SearchRequest) -> Select[Any]:
    res = resource.alias("r")
    return select(func.count()).select_from(res).where(*where_clause(req, res))


