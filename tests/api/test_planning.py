"""How PostgreSQL plans SafeFlag's statements (app/storage/db.py `plan_with_values`): a search with its
actual values every time; a read by id, whose best plan cannot depend on the values, once (the generic
plan PostgreSQL keeps for a prepared statement), and an `_include`'s look-ups from a few pks as PostgreSQL
chooses (generic once it estimates that no costlier); the next search, and the withheld records' probe,
plan with their values again. A prepared search (the flag rules' duplicate check and
lookups by NHS number) is a search: generic plans for it made a Flag create cost four times the
PostgreSQL CPU on a growing table. On SQLite nothing is sent for it."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.fhir.search.params import parse_search
from app.interactions.unit_of_work import repository
from app.safeguarding.lookup import Lookup
from app.search.executor import run_search
from app.search.sql import page_query
from app.security.guard import Restriction, search_patients
from app.security.principal import Principal
from app.security.search_scope import withholds
from app.security.tokens import default_scope
from app.storage.repository import CURRENT_BY_ID
from app.vocabulary import CONFIDENTIALITY
from tests.conftest import BASE_URL
from tests.support.fhir_data import CATEGORY, NHS, flag, organization, patient

RUNS = 8  # PostgreSQL considers a generic plan after a prepared statement's fifth execution
CPIS = [("patient:identifier", f"{NHS}|9990000018"), ("status", "active"), ("_include", "Flag:author")]


async def test_a_search_is_planned_with_its_values_and_a_read_by_id_generically(
    client: httpx.AsyncClient, clean_ctx: AppContext
) -> None:
    org = (await client.post("/fhir/Organization", json=organization())).json()["id"]
    pat = (await client.post("/fhir/Patient", json=patient(nhs="9990000018"))).json()["id"]
    fid = (await client.post("/fhir/Flag", json=flag(f"Patient/{pat}", f"Organization/{org}"))).json()["id"]
    req = parse_search("Flag", CPIS, base=BASE_URL)
    pg = clean_ctx.engine.dialect.name == "postgresql"
    sent: list[str] = []

    def record(_conn: Any, _cur: Any, sql: str, *_a: Any) -> None:
        sent.append(" ".join(sql.split()))

    async def setting(session: AsyncSession) -> str:
        return str((await session.execute(text("SELECT current_setting('plan_cache_mode')"))).scalar_one())

    async def plans(session: AsyncSession) -> dict[str, tuple[int, int]]:
        """This connection's prepared statements: (generic, custom) plans used so far."""
        rows = (await session.execute(text(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        ))).all()
        return {" ".join(r.statement.split()): (r.generic_plans, r.custom_plans) for r in rows}

    async with clean_ctx.engine.connect() as conn:  # one connection: its prepared statements are its own
        session = AsyncSession(bind=conn)
        if pg:
            async with session.begin():
                before = await plans(session)
        event.listen(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
        try:
            for _ in range(RUNS):
                async with session.begin():
                    result = await run_search(session, req)
                    assert [m.id for m in result.matches] == [fid]
                    assert [i.id for i in result.included] == [org]
                    if pg:  # left by its include's look-ups: the next search (or probe) sets it again
                        assert await setting(session) == "auto"
                async with session.begin():  # a prepared search (the flag rules' lookups) is a search too
                    assert [p.id for p in await Lookup(session, BASE_URL).patients_by_nhs_number("9990000018")] == [pat]
                    if pg:
                        assert await setting(session) == "force_custom_plan"
                async with session.begin():
                    row = (await session.execute(CURRENT_BY_ID, {"res_type": "Flag", "res_id": fid})).one()
                    assert row.res_id == fid
                    if pg:
                        assert await setting(session) == "auto"  # the SET LOCAL ended with its transaction
        finally:
            event.remove(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
        searches = [s for s in sent if s.startswith("SELECT") and "idx_token" in s and "idx_reference" in s]
        prepared = [s for s in sent if s.startswith("SELECT") and "idx_token" in s and s not in searches]
        includes = [s for s in sent if s.startswith("SELECT") and "idx_reference" in s and s not in searches]
        # the contents of records not kept from an earlier read (PostgreSQL, app/storage/contents.py)
        contents = [s for s in sent if s.startswith("SELECT") and "idx_" not in s and "= ANY" in s]
        by_id = [s for s in sent if s.startswith("SELECT") and "idx_" not in s and "current_setting" not in s
                 and s not in contents]
        # the Flag's, the Organization's and the Patient's, read once (in the first run), then kept
        assert len(contents) == (3 if pg else 0)
        assert len(searches) == len(includes) == len(prepared) == len(by_id) == RUNS
        assert len(set(searches)) == len(set(includes)) == len(set(prepared)) == len(set(by_id)) == 1
        custom, generic = "SET LOCAL plan_cache_mode = force_custom_plan", "SET LOCAL plan_cache_mode = auto"
        names = {custom: "custom plans", generic: "PostgreSQL's choice", searches[0]: "search",
                 includes[0]: "include", prepared[0]: "prepared search"}
        order = [names[s] for s in sent if s in names]
        # the search with custom plans, its include (from one pk) as PostgreSQL chooses, the lookup with custom plans
        run = ["custom plans", "search", "PostgreSQL's choice", "include", "custom plans", "prepared search"]
        assert order == [k for k in run if pg or k in ("search", "include", "prepared search")] * RUNS
        if not pg:
            return
        async with session.begin():
            after = await plans(session)

    def used(statement: str) -> tuple[int, int]:  # by the runs above (earlier tests share the connection)
        (g0, c0), (g1, c1) = before.get(statement, (0, 0)), after[statement]
        return g1 - g0, c1 - c0

    assert used(searches[0]) == (0, RUNS)
    assert used(prepared[0]) == (0, RUNS)
    generic_plans, custom_plans = used(by_id[0])
    assert (generic_plans + custom_plans, generic_plans > 0) == (RUNS, True)
    assert sum(used(includes[0])) == RUNS  # generic once PostgreSQL estimates it no costlier than custom ones


async def test_the_withheld_records_probe_after_an_include_is_planned_with_its_values(
    client: httpx.AsyncClient, clean_ctx: AppContext
) -> None:
    """A search's `_include` leaves generic plans in force; the notice's probe that follows, a search of
    its own (a generic plan for it was eight times slower), asks for custom plans again. Its answer is
    the same: a health visitor of another organisation is told the restricted Flag was withheld."""
    org = (await client.post("/fhir/Organization", json=organization())).json()["id"]
    pat = (await client.post("/fhir/Patient", json=patient(nhs="9990000018"))).json()["id"]
    hidden = {**flag(f"Patient/{pat}", f"Organization/{org}"),
              "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}]}}
    assert (await client.post("/fhir/Flag", json=hidden)).status_code == 201
    other = {**flag(f"Patient/{pat}", f"Organization/{org}"),
             "category": [{"coding": [{"system": CATEGORY, "code": "exploitation-risk"}]}],
             "code": {"coding": [{"system": CATEGORY, "code": "exploitation-risk"}]}}
    r = await client.post("/fhir/Flag", json=other)
    assert r.status_code == 201, r.text
    shown = r.json()["id"]
    reader = Principal.from_claims({"sub": "hv-1", "role": "health-visitor", "scope": default_scope("health-visitor"),
                                    "iss": "test", "org": "Organization/elsewhere"}, base=BASE_URL)
    req = parse_search("Flag", CPIS, base=BASE_URL)
    pg = clean_ctx.engine.dialect.name == "postgresql"
    sets: list[str] = []

    def record(_conn: Any, _cur: Any, sql: str, *_a: Any) -> None:
        if sql.startswith("SET"):
            sets.append(sql)

    event.listen(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with clean_ctx.sessionmaker() as session, session.begin():
            result = await run_search(session, req, restrict=Restriction(reader))
            assert ([m.id for m in result.matches], [i.id for i in result.included]) == ([shown], [org])
            assert await withholds(session, reader, req, search_patients(result.matches)) is True
            if pg:
                assert (await session.execute(text("SELECT current_setting('plan_cache_mode')"))).scalar_one() \
                    == "force_custom_plan"
    finally:
        event.remove(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    custom, generic = "SET LOCAL plan_cache_mode = force_custom_plan", "SET LOCAL plan_cache_mode = auto"
    assert sets == ([custom, generic, custom] if pg else [])


async def test_a_search_by_category_reads_only_that_types_category_rows(clean_ctx: AppContext) -> None:
    """`Communication?category=...` probes each candidate's token rows; on PostgreSQL, when nothing else
    drives the search, the probe also names the rows' type, so that the planner reads that category's
    rows from `ix_idx_token_lookup` instead of every token row stored (it made the probe a semi-join
    over the whole table). SQLite is not told the type: it would take that index for each candidate's
    probe."""
    category = "https://fhir.safeflag.example/CodeSystem/safeguarding-communication-category"
    async with clean_ctx.sessionmaker() as session, session.begin():
        repo = repository(clean_ctx, session)
        for i in range(300):  # other records' token rows: what a scan of the table would read
            await repo.create("Organization", {**organization(), "identifier": [
                {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": f"T{i}"}]}, validated=True)
        for i in range(40):
            await repo.create("Communication", {
                "resourceType": "Communication", "status": "completed", "sent": f"2026-01-0{1 + i % 9}T09:00:00Z",
                "category": [{"coding": [{"system": category,
                                          "code": "access-notification" if i % 4 else "mash-referral"}]}]},
                validated=True)
        await repo.flush()
    req = parse_search("Communication", [("category", f"{category}|mash-referral"), ("_sort", "-sent")],
                       base=BASE_URL)
    statement = page_query(req)
    sql = str(statement.compile(clean_ctx.engine))
    probe = sql[sql.index("FROM idx_token"):]
    probe = probe[:probe.index(")")]
    pg = clean_ctx.engine.dialect.name == "postgresql"
    assert ("idx_token.res_type" in probe, "1 = 1" in probe) == (pg, not pg), probe
    # a search that a reference drives keeps its probes as they were: told the type, PostgreSQL planned
    # a child's Tasks from every open Task's status rows
    driven = page_query(parse_search("Communication", [("subject", "Patient/example-child"),
                                                       ("category", f"{category}|mash-referral")], base=BASE_URL))
    sql = str(driven.compile(clean_ctx.engine))
    probe = sql[sql.index("FROM idx_token"):]
    probe = probe[:probe.index(")")]
    assert ("idx_token.res_type" in probe, "1 = 1" in probe) == (False, False), probe
    async with clean_ctx.sessionmaker() as session, session.begin():
        assert len((await run_search(session, req)).matches) == 10
        if pg:
            await session.execute(text("ANALYZE"))
            literal = statement.compile(clean_ctx.engine, compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in (await session.execute(text("EXPLAIN " + str(literal)))).all())
            assert "ix_idx_token_lookup" in plan and "Seq Scan on idx_token" not in plan, plan
