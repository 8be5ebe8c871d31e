"""search_scope.py (SQL) and policy.visibility (Python) must agree record by record, on SQLite and
PostgreSQL: what a search returns, and what it counts as withheld."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import event, func, select

from app.context import AppContext
from app.fhir.search.params import parse_search
from app.security.labels import CONFIDENTIALITY
from app.security.policy import Visibility, visibility
from app.security.principal import ROLES, Principal
from app.security.scopes import ScopeSet
from app.security.search_scope import visible_conditions, withheld_conditions, withholds
from app.storage.repository import Repository
from app.storage.tables import resource

OWN, OTHER = "Organization/own", "Organization/other"
MEMBER = "PractitionerRole/pr-own"  # a PractitionerRole of OWN
ME = "Practitioner/me"
CS = "https://fhir.safeflag.example/CodeSystem/"
FIELDS = {
    "Flag": lambda ref: {"author": ref, "status": "active",
                         "category": [{"coding": [{"system": CS + "safeguarding-flag-category", "code": "fgm"}]}]},
    "Communication": lambda ref: {"recipient": [ref], "status": "completed"},
    "DocumentReference": lambda ref: {"custodian": ref, "status": "current"},
    "Encounter": lambda ref: {"serviceProvider": ref, "status": "finished"},
    "Task": lambda ref: {"owner": ref, "status": "requested"},
    "Binary": lambda ref: {"contentType": "text/plain"},
    "Patient": lambda ref: {"gender": "female"},
    # created by client "u" (the principals' `sub`) when it names OWN or MEMBER, else by another client
    "Subscription": lambda ref: {"status": "off", "meta": {"tag": [{"system": CS + "created-by-client",
                                 "code": "u" if ref["reference"] in (OWN, MEMBER) else "other-client"}]}},
}


async def _populate(ctx: AppContext) -> None:
    async with ctx.sessionmaker() as session, session.begin():
        repo = Repository(session, clock=ctx.clock, ids=ctx.ids, indexer=ctx.indexer)  # type: ignore[arg-type]
        for rtype, make in FIELDS.items():
            combos = itertools.product([OWN, OTHER, None], [OWN, MEMBER, ME, OTHER, f"{ctx.settings.fhir_base}/{OWN}"],
                                       [None, "R", "V", "N"])
            for n, (creator, named, label) in enumerate(combos):
                body: dict[str, Any] = {"resourceType": rtype, **make({"reference": named})}
                if label:
                    body["meta"] = {**body.get("meta", {}), "security": [{"system": CONFIDENTIALITY, "code": label}]}
                await repo.create(rtype, body, res_id=f"{rtype.lower()}-{n}", org=creator)
        await repo.flush()


def _principals(base: str = "http://127.0.0.1:8080/fhir") -> list[Principal]:
    """Principals as `Principal.from_claims` builds them: scopes read against our FHIR base."""
    out = []
    for role in ROLES:
        scope = "system/*.cruds" if role == "system" else "user/*.cruds"
        out.append(Principal(sub="u", role=role, scopes=ScopeSet.parse(scope, base=base), issuer="t", org=OWN,
                             fhir_user=ME, org_refs=frozenset({OWN, MEMBER}), own_refs=frozenset({ME}),
                             shared_refs=frozenset({"DocumentReference/documentreference-3", "Binary/binary-7"})))
    out.append(Principal(sub="u", role="health-visitor", scopes=ScopeSet.parse("user/Flag.rs", base=base), issuer="t"))
    out.append(Principal(sub="other-client", role="system", scopes=ScopeSet.parse("system/*.rs", base=base),
                         issuer="t", org=OWN, org_refs=frozenset({OWN})))  # another client of the same org
    out.append(Principal(sub="u", role="system", scopes=ScopeSet.parse("system/*.rs", base=base), issuer="t"))
    out.append(Principal(sub="u", role="ed-clinician", issuer="t", org=OWN, org_refs=frozenset({OWN}),
                         scopes=ScopeSet.parse(f"user/Flag.rs?author={OWN} user/Task.r", base=base)))
    return out


async def test_sql_and_python_agree(clean_ctx: AppContext) -> None:
    ctx = clean_ctx
    await _populate(ctx)
    checked = 0
    async with ctx.sessionmaker() as session:
        for rtype in FIELDS:
            rows = (await session.execute(select(resource.c.res_id, resource.c.content, resource.c.created_by_org)
                                          .where(resource.c.res_type == rtype))).all()
            assert len(rows) == 60
            for who in _principals(ctx.settings.fhir_base):
                seen = {rid: visibility(who, rtype, content, org) for rid, content, org in rows}
                r = resource.alias("r")
                base = [r.c.res_type == rtype, r.c.deleted.is_(False)]
                sql_visible = set((await session.execute(
                    select(r.c.res_id).where(*base, *visible_conditions(who, rtype, r)))).scalars())
                py_visible = {rid for rid, v in seen.items() if v is Visibility.VISIBLE}
                assert sql_visible == py_visible, (rtype, who.role, sorted(sql_visible - py_visible),
                                                   sorted(py_visible - sql_visible))
                withheld = withheld_conditions(who, rtype, r)
                py_withheld = sum(v is Visibility.WITHHELD for v in seen.values())
                if withheld is None:
                    assert py_withheld == 0
                else:
                    n = (await session.execute(select(func.count()).select_from(r).where(*base, *withheld))).scalar_one()
                    assert n == py_withheld, (rtype, who.role)
                checked += 1
    assert checked == len(FIELDS) * len(_principals())


async def test_expected_counts_for_an_ed_clinician(clean_ctx: AppContext) -> None:
    """A spot check with numbers worked out by hand, so that agreement is not agreement on nonsense."""
    ctx = clean_ctx
    await _populate(ctx)
    ed = _principals()[0]
    async with ctx.sessionmaker() as session:
        r = resource.alias("r")

        async def count(rtype: str, conds: list[Any]) -> int:
            stmt = select(func.count()).select_from(r).where(r.c.res_type == rtype, *conds)
            return int((await session.execute(stmt)).scalar_one())

        # Flags: all 60 in reach; restricted (R or V) ones hidden unless written by OWN:
        # 3 creators x 5 names x 2 restricted labels = 30 restricted, of which 10 written by OWN
        assert await count("Flag", visible_conditions(ed, "Flag", r)) == 40
        assert await count("Flag", withheld_conditions(ed, "Flag", r) or []) == 20
        # Encounters: of OWN when written by OWN (20), or when serviceProvider names OWN (2 of the 5 names:
        # OWN and its absolute URL; serviceProvider only targets Organization, so the PractitionerRole and
        # Practitioner names do not count) for the other 40 -> 20 + 16 = 36 in reach; the restricted half of
        # the 16 not written by OWN is withheld -> 28 visible, 8 withheld
        assert await count("Encounter", visible_conditions(ed, "Encounter", r)) == 28
        assert await count("Encounter", withheld_conditions(ed, "Encounter", r) or []) == 8
        # Communications: recipient may be anyone, so OWN, its PractitionerRole, the user and the absolute
        # URL all count (4 of 5): 20 + 32 = 52 in reach, 16 withheld, 36 visible
        assert await count("Communication", visible_conditions(ed, "Communication", r)) == 36
        assert await count("Communication", withheld_conditions(ed, "Communication", r) or []) == 16


def test_named_patients_are_those_named_by_reference_or_identifier() -> None:
    """The patients whose restricted records a search's notice speaks of are named, never picked by a
    trait: a chain or `:missing` would make the notice list every child with restricted records."""
    from app.fhir.search.params import parse_search
    from app.security.search_scope import named_patients

    base = "http://127.0.0.1:8080/fhir"
    nhs = "https://fhir.nhs.uk/Id/nhs-number|9990000018"
    named = parse_search("Flag", [("patient", "Patient/a"), ("subject", "b"), ("subject:Patient", "c"),
                                  ("patient:identifier", nhs), ("author", OWN), ("_id", "x")], base=base)
    assert [c.key for c in named_patients(named)] == ["patient", "subject", "subject:Patient", "patient:identifier"]
    picked = parse_search("Flag", [("patient.gender", "female"), ("subject:missing", "false"),
                                   ("subject:Organization", "g"), ("category", "fgm")], base=base)
    assert named_patients(picked) == []


async def test_visible_any_type(clean_ctx: AppContext) -> None:
    from app.security.search_scope import visible_any_type

    ctx = clean_ctx
    await _populate(ctx)
    base = ctx.settings.fhir_base
    async with ctx.sessionmaker() as session:
        r = resource.alias("r")
        for who in _principals(base)[:8]:
            stmt = select(r.c.res_type, r.c.res_id).where(visible_any_type(who, r, tuple(FIELDS)))
            together = set((await session.execute(stmt)).all())
            apart = set()
            for rtype in FIELDS:
                one = select(r.c.res_type, r.c.res_id).where(r.c.res_type == rtype, *visible_conditions(who, rtype, r))
                apart |= set((await session.execute(one)).all())
            assert together == apart, who.role
        mash = _principals(base)[5]
        assert {t for t, _ in together} <= set(FIELDS)
        mash_rows = set((await session.execute(
            select(r.c.res_type).where(visible_any_type(mash, r, ("Encounter", "Task"))))).scalars())
        assert mash_rows == set()  # a MASH practitioner reads neither


def test_visible_any_type_is_built_once_per_principal() -> None:
    """Cached (app/security/search_scope.py): equal principals share the condition, and anything that
    changes what a principal sees (here the organisation, or the token's scopes) gets its own."""
    from dataclasses import replace

    from app.security.search_scope import visible_any_type

    who = _principals()[0]
    same = replace(who)  # equal, not identical
    types = tuple(FIELDS)
    first = visible_any_type(who, resource, types)
    assert visible_any_type(same, resource, types) is first
    other_org = replace(who, org="Organization/elsewhere")
    assert visible_any_type(other_org, resource, types) is not first
    narrower = replace(who, scopes=ScopeSet.parse("user/Flag.rs", base=who.base))
    assert str(visible_any_type(narrower, resource, types)) != str(first)


def test_visible_conditions_are_built_once_per_principal_and_type() -> None:
    """Cached like `visible_any_type`: equal principals share them, another organisation or type does not."""
    from dataclasses import replace

    who = _principals()[0]
    first = visible_conditions(who, "Flag", resource)
    assert visible_conditions(replace(who), "Flag", resource) is first
    assert visible_conditions(replace(who, org="Organization/elsewhere"), "Flag", resource) is not first
    assert visible_conditions(who, "Encounter", resource) is not first


async def test_subscriptions_are_their_creators(clean_ctx: AppContext) -> None:
    """Worked out by hand: of the 60 Subscriptions, OWN created 20, 8 of them by its client "u" (named
    OWN or MEMBER, each unlabelled or labelled three ways) and 12 by "other-client"; each client sees
    its own only; "u" of no organisation sees the 4 unrestricted ones that no organisation's "u" created;
    a safeguarding lead and an ED clinician see none, admin all 60."""
    await _populate(clean_ctx)
    by_role_sub = {}
    async with clean_ctx.sessionmaker() as session:
        for who in _principals(clean_ctx.settings.fhir_base):
            r = resource.alias("r")
            n = (await session.execute(select(func.count()).select_from(r).where(
                r.c.res_type == "Subscription", *visible_conditions(who, "Subscription", r)))).scalar_one()
            by_role_sub[(who.role, who.sub, who.org)] = n
    assert by_role_sub[("system", "u", OWN)] == 8
    assert by_role_sub[("system", "other-client", OWN)] == 12
    assert by_role_sub[("system", "u", None)] == 4
    assert by_role_sub[("safeguarding-lead", "u", OWN)] == 0
    assert by_role_sub[("ed-clinician", "u", OWN)] == 0
    assert by_role_sub[("admin", "u", OWN)] == 60


async def test_a_withheld_records_probe_asked_again_goes_out_again_only_after_a_write(clean_ctx: AppContext) -> None:
    """Two searches of one transaction showing the same child's records ask the same withheld-records probe:
    it goes out once; a record written in the transaction (one withheld from the asker) makes it go out
    again and see that record, and the next transaction asks afresh."""
    ctx = clean_ctx
    hv = Principal(sub="u", role="health-visitor", scopes=ScopeSet.parse("user/*.cruds", base=ctx.settings.fhir_base),
                   issuer="t", org=OWN, fhir_user=ME, org_refs=frozenset({OWN, MEMBER}), own_refs=frozenset({ME}))
    req = parse_search("Task", [], base=ctx.settings.fhir_base)  # names no patient: asks about the shown child
    sent: list[str] = []

    def probes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM resource AS w" in statement:
            sent.append(statement)

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", probes)
    try:
        async with ctx.sessionmaker() as session, session.begin():
            asked = [await withholds(session, hv, req, ["Patient/c1"]) for _ in range(2)]
            assert (asked, len(sent)) == ([False, False], 1)
            repo = Repository(session, clock=ctx.clock, ids=ctx.ids, indexer=ctx.indexer)  # type: ignore[arg-type]
            await repo.create("Task", {"resourceType": "Task", "status": "requested", "intent": "order",
                                       "owner": {"reference": OWN}, "for": {"reference": "Patient/c1"},
                                       "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}]}},
                              org=OTHER)
            await repo.flush()
            asked = [await withholds(session, hv, req, ["Patient/c1"]) for _ in range(2)]
            assert (asked, len(sent)) == ([True, True], 2)
        async with ctx.sessionmaker() as session, session.begin():
            assert (await withholds(session, hv, req, ["Patient/c1"]), len(sent)) == (True, 3)
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", probes)
