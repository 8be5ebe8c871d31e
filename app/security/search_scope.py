"""The SQL twin of `policy.visibility`: conditions that make a search return exactly what the
principal may see, and tell whether records were withheld.

Filtering in SQL rather than after the page is fetched keeps `total`, paging links and `_summary=count`
honest: a record outside the role's reach must not show up in a count either. The same rules as
policy.py, read off the same tables (`READ`, `ORG_FIELDS`, `REACH_FIELDS`) and the same index rows
the search uses; tests/security/test_search_scope.py checks both agree on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import NamedFromClause

from app.fhir.search.params import Criterion, SearchRequest
from app.search.sql import compile_criterion, never, where_clause
from app.security.labels import RESTRICTED_CODES
from app.security.policy import CLEARED_ROLES, CREATOR_SYSTEM, ORG_FIELDS, REACH_FIELDS, READ, Reach
from app.security.principal import ROLES, Principal
from app.security.scopes import qualifier_criteria
from app.storage.buffer import READS_MEMO
from app.storage.db import plan_with_values
from app.storage.tables import idx_reference, idx_token, resource
from app.vocabulary import CONFIDENTIALITY

Condition = ColumnElement[bool]


def _any(res: NamedFromClause) -> Any:
    """An alias of `resource`, which the search compiler accepts wherever it takes the table."""
    return res


def _names_any(res: NamedFromClause, params: tuple[str, ...], refs: frozenset[str]) -> Condition | None:
    """EXISTS an index row of `params` on this resource pointing at one of `refs` (`Type/id`)."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for ref in sorted(refs):
        rtype, _, rid = ref.partition("/")
        by_type[rtype].append(rid)
    if not params or not by_type:
        return None
    t = idx_reference.alias()
    targets = or_(*[and_(t.c.target_type == rtype, t.c.target_id.in_(ids)) for rtype, ids in by_type.items()])
    return exists().where(t.c.resource_pk == res.c.pk, t.c.param.in_(params), targets)


def reach_condition(principal: Principal, resource_type: str, res: NamedFromClause) -> Condition | None:
    """Records within the role's read reach; None means every record."""
    reach = READ[resource_type][ROLES.index(principal.role)]
    if reach is Reach.ALL:
        return None
    if reach is Reach.NONE:
        return false()
    if reach is Reach.CREATOR:
        return created_by_condition(principal, res)
    if reach is Reach.SHARED:
        ids = [ref.partition("/")[2] for ref in principal.shared_refs if ref.startswith(resource_type + "/")]
        return res.c.res_id.in_(sorted(ids)) if ids else false()
    fields = ORG_FIELDS.get(resource_type, ()) if reach is Reach.ORG else REACH_FIELDS[reach]
    conds: list[Condition] = []
    if reach is not Reach.OWNED and principal.org is not None:
        conds.append(res.c.created_by_org == principal.org)
    named = _names_any(res, fields, principal.agent_refs)
    if named is not None:
        conds.append(named)
    return or_(*conds) if conds else false()


def created_by_condition(principal: Principal, res: NamedFromClause) -> Condition:
    """Records created by the principal's organisation and client (`policy.is_creator`): the
    creator tag's `_tag` index row names its `sub`."""
    t = idx_token.alias()
    org = res.c.created_by_org.is_(None) if principal.org is None else res.c.created_by_org == principal.org
    return and_(org, exists().where(t.c.resource_pk == res.c.pk, t.c.param == "_tag",
                                    t.c.system == CREATOR_SYSTEM, t.c.code == principal.sub))


def scope_condition(principal: Principal, resource_type: str, res: NamedFromClause) -> Condition | None:
    """What the token's qualified `s` scopes let through; None means no narrowing."""
    alternatives = principal.scopes.search_constraints(resource_type, context=principal.context)
    if alternatives is None:
        return false()
    if () in alternatives:
        return None
    ors = []
    for params in alternatives:
        scope_criteria = qualifier_criteria(resource_type, params, principal.base)
        if scope_criteria is not None:
            ors.append(and_(*[compile_criterion(_any(res), resource_type, c) for c in scope_criteria]))
    return or_(*ors) if ors else false()


def restricted(res: NamedFromClause) -> Condition:
    """The record carries an R or V confidentiality label (the `_security` index rows)."""
    t = idx_token.alias()
    return exists().where(
        t.c.resource_pk == res.c.pk, t.c.param == "_security", t.c.system == CONFIDENTIALITY,
        t.c.code.in_(sorted(RESTRICTED_CODES)),
    )


def cleared_condition(principal: Principal, res: NamedFromClause) -> Condition | None:
    """Restricted records this principal may see; None means all of them."""
    if principal.role in CLEARED_ROLES:
        return None
    if principal.org is None:
        return false()
    return res.c.created_by_org == principal.org


def _and(conds: list[Condition | None]) -> list[Condition]:
    return [c for c in conds if c is not None]


@lru_cache(maxsize=1024)
def visible_conditions(principal: Principal, resource_type: str, res: NamedFromClause) -> tuple[Condition, ...]:
    """ANDed to a search: exactly the records `policy.visibility` calls VISIBLE. Built once per
    principal, type and table, as `visible_any_type` (every search asks for them; searches of one
    shape share their statement, app/search/prepared.py, so building them was the only work left)."""
    cleared = cleared_condition(principal, res)
    label = None if cleared is None else or_(not_(restricted(res)), cleared)
    return tuple(_and([reach_condition(principal, resource_type, res), scope_condition(principal, resource_type, res),
                       label]))


@lru_cache(maxsize=1024)
def withheld_conditions(principal: Principal, resource_type: str, res: NamedFromClause) -> tuple[Condition, ...] | None:
    """ANDed to a count: the records `policy.visibility` calls WITHHELD; None when there cannot be any.
    Built once per principal, type and table, as `visible_conditions` (every search's notice asks)."""
    if principal.role in CLEARED_ROLES:
        return None
    # written by another organisation, or by no organisation's token at all (NULL is "not ours")
    not_ours = (
        or_(res.c.created_by_org.is_(None), res.c.created_by_org != principal.org)
        if principal.org is not None else None
    )
    conds = tuple(_and([reach_condition(principal, resource_type, res), scope_condition(principal, resource_type, res),
                        restricted(res), not_ours]))
    return None if never(conds) else conds  # outside the role's reach or scopes: no probe to send


@lru_cache(maxsize=1024)
def visible_any_type(principal: Principal, res: NamedFromClause, types: tuple[str, ...]) -> Condition:
    """For system-level history and search, and for `_include`d resources: rows of any of `types`, each
    under its own type's rules.

    Built once per principal (a frozen dataclass: role, organisation, scopes, references) and table:
    the OR over every type cost about a tenth of a CP-IS search's CPU when built per request, and
    SQL expression objects are immutable, so statements may share them."""
    ors = [and_(res.c.res_type == t, *visible_conditions(principal, t, res)) for t in types
           if READ[t][ROLES.index(principal.role)] is not Reach.NONE]
    return or_(*ors) if ors else false()


PATIENT_PARAMS = ("patient", "subject")
_WITHHELD = resource.alias("w")  # one alias, so that `withheld_conditions` built on it are kept


def named_patients(req: SearchRequest) -> list[Criterion]:
    """The criteria by which a search names the patients it is about: `patient` or `subject` by
    reference or by identifier. Never a chain or `:missing`: those pick children by other traits, and
    the notice would list every child with restricted records."""
    return [c for c in req.criteria if c.name in PATIENT_PARAMS and c.kind == "reference" and not c.chain
            and c.modifier in (None, "identifier") and c.missing is None and c.type_hint in (None, "Patient")]


async def withholds(session: AsyncSession, principal: Principal, req: SearchRequest,
                    shown_patients: Iterable[str]) -> bool:
    """Whether a search's notice says restricted records were withheld (`labels.withheld_issue`).

    It does when a record of the searched type that the principal may not see (its restricted label, within
    the role's reach and scopes) is about a patient of the search: one its criteria name, or one a record
    shown is about. Its other criteria play no part, and there is no number: what the notice says
    depends on who asks, the patients named and what they see, so no criterion about the hidden record
    itself (author, category, code, `_id`, a date...) can probe it. A search that names no patient and
    shows nobody's record says nothing. `shown_patients`: the patients the records shown are about
    (`guard.search_patients`, worked out once per search: the audit record names them too)."""
    return await any_withheld(session, [withheld_probe(principal, req, shown_patients)])


def withheld_probe(principal: Principal, req: SearchRequest, shown_patients: Iterable[str]) -> Select[Any] | None:
    """`withholds`' statement for one search (a withheld record's key, at most one); None when the search
    can have none withheld (`withholds`)."""
    res = _WITHHELD
    conds = withheld_conditions(principal, req.resource_type, res)
    if conds is None or req.resource_type == "Patient":
        return None
    named = named_patients(req)
    if named:  # every record shown matched these too: its patient is one of those named
        return select(res.c.pk).where(*where_clause(replace(req, criteria=named), _any(res)), *conds).limit(1)
    return _about_shown(principal, req.resource_type, frozenset(shown_patients))


async def any_withheld(session: AsyncSession, probes: Iterable[Select[Any] | None]) -> bool:
    """Whether any of `probes` (`withheld_probe`'s, for the searches of one answer whose notice is one, as
    the safeguarding summary's sections) finds a withheld record: one statement for them all."""
    stmts = tuple(probe for probe in probes if probe is not None)
    if not stmts:
        return False
    # the same probes asked again in one transaction that wrote nothing meanwhile (two lists of one page
    # showing the same child's records: the MASH page's) are answered as they were: kept by the probes'
    # identity (`_about_shown` keeps one for each asker, type and patients), dropped at the next write
    transaction = session.sync_session.get_transaction()
    held = session.info.get(READS_MEMO)
    if held is None or held[0] is not transaction:  # kept for this transaction alone
        held = session.info[READS_MEMO] = (transaction, {})
    memo: dict[tuple[Select[Any], ...], bool] = held[1]
    if stmts in memo:
        return memo[stmts]
    await plan_with_values(session)  # a generic plan for a probe was eight times slower
    if len(stmts) == 1:
        found = (await session.execute(stmts[0])).first() is not None
    else:
        found = bool((await session.execute(select(or_(*(exists(stmt) for stmt in stmts))))).scalar())
    memo[stmts] = found
    return found


@lru_cache(maxsize=256)
def _about_shown(principal: Principal, resource_type: str, refs: frozenset[str]) -> Select[Any] | None:
    """`withholds`' probe for a search that names no patient: a withheld record of `resource_type` about
    one of `refs`; None when there are none to ask about. Built once per asker, type and patients, as a
    page viewed again asks the same (building it was most of the probe's CPU)."""
    res = _WITHHELD
    conds = withheld_conditions(principal, resource_type, res)
    of_shown = _names_any(res, ("patient",), refs)
    if conds is None or of_shown is None:
        return None
    return select(res.c.pk).where(res.c.res_type == resource_type, res.c.deleted.is_(False), of_shown, *conds).limit(1)
