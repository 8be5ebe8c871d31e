"""SQLite query plans of index-driven searches (app/search/sql.py `where_clause`): the CP-IS
search and the duplicate-flag check start from the search-index rows of the child, not from every
resource of the type, so they do not grow with the number of Flags. SQLite only: PostgreSQL plans
from its statistics (the CP-IS figures at 300 k Flags are in docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from app.context import AppContext
from app.fhir.search.params import parse_search
from app.search.sql import page_query
from tests.conftest import BASE_URL

NHS = "https://fhir.nhs.uk/Id/nhs-number"


async def _plan(ctx: AppContext, query: list[tuple[str, str]]) -> list[str]:
    req = parse_search("Flag", query, base=f"{BASE_URL}/fhir")
    stmt = page_query(req)
    compiled: Any = stmt.compile(dialect=ctx.engine.dialect, compile_kwargs={"render_postcompile": True})
    async with ctx.engine.connect() as conn:
        params = tuple(compiled.params[name] for name in compiled.positiontup)
        rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params)
        return [r[3] for r in rows]


@pytest.mark.parametrize("ctx", ["sqlite"], indirect=True)
@pytest.mark.parametrize("query", [
    [("patient:identifier", f"{NHS}|9990000018"), ("status", "active")],
    [("subject", "Patient/p1"), ("status", "active"), ("category", "child-protection-plan")],
])
async def test_an_index_driven_search_starts_from_the_index_rows(
    clean_ctx: AppContext, query: list[tuple[str, str]]
) -> None:
    plan = await _plan(clean_ctx, query)
    assert plan[0] == "SEARCH resource USING INTEGER PRIMARY KEY (rowid=?)"
    assert not any("ix_resource_type_updated" in step for step in plan)


@pytest.mark.parametrize("ctx", ["sqlite"], indirect=True)
async def test_a_search_without_a_driving_criterion_still_uses_the_type(clean_ctx: AppContext) -> None:
    plan = await _plan(clean_ctx, [("status", "active")])
    assert plan[0].startswith("SEARCH resource USING INDEX ix_resource_type_updated (res_type=?")


@pytest.mark.parametrize("ctx", ["sqlite"], indirect=True)
async def test_the_type_condition_is_kept_for_id(clean_ctx: AppContext) -> None:
    req = parse_search("Flag", [("_id", "f1")], base=f"{BASE_URL}/fhir")
    sql = str(page_query(req).compile(dialect=clean_ctx.engine.dialect))
    assert "resource.res_type = ?" in sql
    async with clean_ctx.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM resource"))).scalar_one() == 0
