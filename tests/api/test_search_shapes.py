"""Page queries shared by shape (app/search/prepared.py `page_statement`), on both databases:
a search of a shape already built answers for its own values, never for the values or the access
conditions of the search that built it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import literal, select

from app.context import AppContext
from app.fhir.search.params import parse_search
from app.search import executor, prepared
from app.search.executor import run_search
from app.security.guard import Restriction
from app.security.principal import Principal
from app.security.scopes import ScopeSet
from tests.api.test_search_prepared import NHS, _flag, _seed
from tests.conftest import BASE_URL
from tests.support.fhir_data import create, organization

CPIS = "Flag?patient:identifier={nhs}&status=active&_include=Flag:author"


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode)


def _principal(sub: str, role: str, org: str | None = None) -> Principal:
    return Principal(sub=sub, role=role, scopes=ScopeSet.parse("user/*.cruds"), issuer="t", org=org)


def _shapes_of(rtype: str) -> list[Any]:
    return [k for k in prepared._SHAPES if k[1] == rtype]


async def test_each_search_of_a_shape_answers_for_its_own_values(client: httpx.AsyncClient) -> None:
    ids = await _seed(client)
    prepared._SHAPES.clear()
    found = {}
    for nhs in ("9990000018", "9990000026", "9990000034", "9990000018"):
        r = await client.get("/fhir/" + CPIS.format(nhs=f"{NHS}|{nhs}"))
        assert r.status_code == 200, r.text
        found[nhs] = (_ids(r.json()), _ids(r.json(), "include"))
    # p1 has two active flags (by reference and by NHS number), p2 one active (one ended), p3 none
    assert [len(found[n][0]) for n in ("9990000018", "9990000026", "9990000034")] == [2, 1, 0]
    assert found["9990000018"][1] == found["9990000026"][1] == [ids["org"]]
    assert len(_shapes_of("Flag")) == 1  # four searches, one statement


async def test_the_statement_is_shared_only_by_the_same_asker(clean_ctx: AppContext) -> None:
    prepared._SHAPES.clear()
    lead = _principal("lead", "safeguarding-lead")
    clinician = _principal("hv", "health-visitor", org="Organization/a")
    req = parse_search("Flag", [("status", "active")], base=f"{BASE_URL}/fhir")
    async with clean_ctx.sessionmaker() as session, session.begin():
        for asker in (lead, clinician, lead, _principal("hv", "health-visitor", org="Organization/a")):
            await run_search(session, req, restrict=Restriction(asker))
    assert [k[0] for k in _shapes_of("Flag")] == [("asker", lead), ("asker", clinician)]


async def test_a_shape_whose_values_do_not_all_reach_the_sql_is_built_every_time(
    clean_ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared._SHAPES.clear()
    monkeypatch.setattr(prepared, "page_query", lambda req, where: select(literal(1)))
    req = parse_search("Flag", [("status", "active")], base=f"{BASE_URL}/fhir")
    stmt, params = prepared.page_statement(req, [], None)
    assert params == {}
    assert list(prepared._SHAPES.values()) == [None]
    again, params = prepared.page_statement(req, [], None)
    assert params == {} and again is not stmt  # built afresh


def test_the_cache_keeps_the_recently_used_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    prepared._SHAPES.clear()
    monkeypatch.setattr(prepared, "MAX_SHAPES", 3)
    for count in (1, 2, 3, 1, 4, 5):
        req = parse_search("Flag", [("status", "active"), ("_count", str(count))], base=f"{BASE_URL}/fhir")
        prepared.page_statement(req, [], None)
    assert [k[3] for k in prepared._SHAPES] == [1, 4, 5]  # 2 and 3 went, least recently used first


async def test_an_included_author_is_the_one_of_each_page(client: httpx.AsyncClient) -> None:
    ids = await _seed(client)  # every seeded flag is by ids["org"]
    other = await create(client, organization())
    r = await client.post("/fhir/Flag", json=_flag({"reference": f"Patient/{ids['p3']}"}, f"Organization/{other}",
                                                    "looked-after-child"))
    assert r.status_code == 201, r.text
    executor._STEPS.clear()
    for nhs, author in (("9990000018", ids["org"]), ("9990000034", other), ("9990000026", ids["org"])):
        r = await client.get("/fhir/" + CPIS.format(nhs=f"{NHS}|{nhs}"))
        assert _ids(r.json(), "include") == [author], nhs
    assert len(executor._STEPS) == 1  # three pages, one include statement
