"""The search bounds (app/fhir/search/limits.py): at most 10 criteria and 100 ORed values per search by
default, 400 `too-costly` beyond, on every path that parses a search (GET, POST _search, conditional
create, a Bundle entry, a subscription's filters), before any SQL runs. Both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest

from app.context import AppContext
from app.main import create_app
from tests.conftest import BASE_URL, admin_token
from tests.support.fhir_data import count, create, outcome, patient, req, tx

CRITERIA = ("SF-0430: The search has more than 10 criteria (each repeated parameter and each _sort, _include and "
            "_revinclude value counts once); narrow it or split it")
VALUES = ("SF-0431: The search has more than 100 values in all (a,b counts two; a chained parameter's count once "
          "per resource type it is tried on); narrow it or split it")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def too_costly(diagnostics: str, expression: str) -> dict[str, object]:
    return outcome("too-costly", diagnostics, [expression])


async def test_repeated_parameters_beyond_the_bound_are_400_too_costly(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient(family="Abbott"))
    allowed = urlencode([("name", "ab")] * 10)
    r = await client.get(f"/fhir/Patient?{allowed}")
    assert r.status_code == 200 and [e["resource"]["id"] for e in r.json()["entry"]] == [pid]
    for n in (11, 1000):  # 1,000 repeats answered 500 on SQLite and held PostgreSQL for minutes
        query = urlencode([("name", "a")] * n)
        for r in (await client.get(f"/fhir/Patient?{query}"),
                  await client.post("/fhir/Patient/_search", content=query, headers=FORM)):
            assert (r.status_code, r.json()) == (400, too_costly(CRITERIA, "name"))


async def test_values_beyond_the_bound_are_400_too_costly(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient(family="Abbott"))
    r = await client.get("/fhir/Patient?" + urlencode([("name", ",".join(["ab"] * 100))]))
    assert r.status_code == 200 and [e["resource"]["id"] for e in r.json()["entry"]] == [pid]
    for query in ([("name", ",".join(["a"] * 101))], [("name", ",".join(["a"] * 1000))],
                  [("name", ",".join(["a"] * 60)), ("family", ",".join(["a"] * 41))]):
        r = await client.get("/fhir/Patient?" + urlencode(query))
        assert (r.status_code, r.json()) == (400, too_costly(VALUES, query[-1][0]))


async def test_chains_sorts_and_includes_count(client: httpx.AsyncClient) -> None:
    # an untyped reference chains through every type with the parameter: this grew exponentially
    deep = "subject." * 8 + "name"
    r = await client.get(f"/fhir/Flag?{deep}=a")
    assert (r.status_code, r.json()) == (400, too_costly(
        f"SF-0432: Chains through more than 3 references are not supported ('{deep}')", deep))
    wide = "subject." * 3 + "name"  # allowed depth, but tried on too many types: more values than allowed
    r = await client.get(f"/fhir/Flag?{wide}=a")
    assert (r.status_code, r.json()) == (400, too_costly(VALUES, wide))
    assert (await client.get("/fhir/Flag?author._id=a,b,c,d,e")).status_code == 200
    r = await client.get("/fhir/Patient?_sort=" + ",".join(["family"] * 11))
    assert (r.status_code, r.json()) == (400, too_costly(CRITERIA, "_sort"))
    r = await client.get("/fhir/Patient?name=a&" + urlencode([("_revinclude", "*")] * 10))
    assert (r.status_code, r.json()) == (400, too_costly(CRITERIA, "_revinclude"))
    assert (await client.get("/fhir/Patient?name=a&" + urlencode([("_revinclude", "*")] * 9))).status_code == 200


async def test_conditional_create_and_bundle_entries_are_bounded(client: httpx.AsyncClient) -> None:
    criteria = urlencode([("family", "a")] * 11)
    r = await client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": criteria})
    assert (r.status_code, r.json()) == (400, too_costly(CRITERIA, "family"))
    assert await count(client, "Patient") == 0  # nothing was created
    r = await client.post("/fhir", json=tx(req("GET", f"Patient?{criteria}"), req("GET", "Patient?family=a"),
                                           kind="batch"))
    assert r.status_code == 200
    first, second = (e["response"] for e in r.json()["entry"])
    assert (first["status"], first["outcome"]) == ("400 Bad Request", too_costly(CRITERIA, "family"))
    assert second["status"] == "200 OK"


async def test_subscription_filters_are_bounded(client: httpx.AsyncClient) -> None:
    ext = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"
    filters = [{"url": ext, "valueString": "Communication?" + urlencode([("patient", "Patient/p1")] * 6)}] * 2
    sub = {
        "resourceType": "Subscription", "status": "requested", "reason": "ED attendances",
        "criteria": "https://fhir.safeflag.example/SubscriptionTopic/ed-attendance",
        "_criteria": {"extension": filters},
        "channel": {"type": "websocket"},
    }
    r = await client.post("/fhir/Subscription", json=sub)
    assert (r.status_code, r.json()) == (400, too_costly(CRITERIA, "patient"))
    assert await count(client, "Subscription") == 0


@pytest.fixture
async def narrow(clean_ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    settings = clean_ctx.settings.model_copy(update={"search_max_criteria": 2, "search_max_values": 3,
                                                     "bundle_max_entries": 7})
    clean_ctx.settings, saved = settings, clean_ctx.settings
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=clean_ctx)), base_url=BASE_URL,
                                     headers={"Authorization": f"Bearer {admin_token(clean_ctx)}"}) as c:
            yield c
    finally:
        clean_ctx.settings = saved


async def test_the_bounds_are_settings_stated_in_the_capability_statement(narrow: httpx.AsyncClient) -> None:
    rest = (await narrow.get("/fhir/metadata")).json()["rest"][0]
    assert rest["documentation"] == (
        "Each search (and each conditional interaction's criteria) takes at most 2 search criteria (each repeated "
        "parameter and each _sort, _include and _revinclude value counting once), 3 values in all (a,b counts two; "
        "a chained parameter's count once per resource type it is tried on) and chains through 3 references; a "
        "search beyond that is answered 400 with issue code `too-costly`. A batch or transaction Bundle takes at most "
        "7 entries, and its search entries at most 7 criteria together; more is answered 413 `too-costly`.")
    assert (await narrow.get("/fhir/Patient?name=a&family=b,c")).status_code == 200
    r = await narrow.get("/fhir/Patient?name=a&family=b&gender=male")
    assert r.status_code == 400
    assert r.json()["issue"][0]["diagnostics"].startswith("SF-0430: The search has more than 2 criteria")
    r = await narrow.get("/fhir/Patient?name=a,b&family=b,c")
    assert r.json() == too_costly("SF-0431: The search has more than 3 values in all (a,b counts two; a chained "
                                  "parameter's count once per resource type it is tried on); narrow it or split it",
                                  "family")


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_bundles_beyond_the_entry_bound_are_413_too_costly(client: httpx.AsyncClient, kind: str) -> None:
    over = tx(*[req("POST", "Patient", {"resourceType": "Patient", "gender": "male"}) for _ in range(101)], kind=kind)
    r = await client.post("/fhir", json=over)
    assert (r.status_code, r.json()) == (413, outcome(
        "too-costly", f"SF-0433: The Bundle has 101 entries; a {kind} takes at most 100: split it", ["Bundle.entry"]))
    assert await count(client, "Patient") == 0
    full = tx(*[req("POST", "Patient", {"resourceType": "Patient", "gender": "male"}) for _ in range(100)], kind=kind)
    r = await client.post("/fhir", json=full)
    assert r.status_code == 200 and len(r.json()["entry"]) == 100
    assert await count(client, "Patient") == 100


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_the_search_entries_of_a_bundle_share_one_bound(client: httpx.AsyncClient, kind: str) -> None:
    """Each search entry is bounded as any search; together they take at most 100 criteria, so that a
    batch of the costliest searches cannot hold the database for the time of a hundred of them."""
    costly = "Patient?" + urlencode([("name", f"a{i}") for i in range(10)])
    over = tx(*[req("GET", costly) for _ in range(10)], req("GET", "Patient?_sort=family,gender&_count=5"), kind=kind)
    r = await client.post("/fhir", json=over)
    assert (r.status_code, r.json()) == (413, outcome(
        "too-costly", "SF-0434: The Bundle's search entries have 102 criteria together; a Bundle takes at most 100: "
        "split it", ["Bundle.entry"]))
    allowed = tx(*[req("GET", costly) for _ in range(10)], *[req("GET", "Patient/nobody") for _ in range(90)],
                 kind=kind)
    r = await client.post("/fhir", json=allowed)
    assert r.status_code == (200 if kind == "batch" else 404)  # a transaction fails on its first missing read
