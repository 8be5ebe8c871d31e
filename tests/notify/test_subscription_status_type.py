"""`GET /fhir/Subscription/$status` at the type level (Backport IG `backport-subscription-status`, which
allows it): the status of each Subscription named by `id` (repeated or comma-separated) or, with no
`id`, of every Subscription the caller may see, optionally filtered by `status`. Ownership is exactly the
instance level's: another client's Subscription is 404 as an unknown id would be, and is never listed
or counted. Both databases."""

from __future__ import annotations

from typing import Any

import httpx

from app.context import AppContext
from tests.conftest import FHIR
from tests.notify.conftest import TOPIC, subscription
from tests.notify.owners import intruder, owner, sibling
from tests.support.fhir_data import outcome

HOOK = "http://127.0.0.1/hook"  # nothing is delivered in these tests
BACKPORT_STATUS = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"


async def _subscribe(api: httpx.AsyncClient, who: dict[str, str], status: str = "requested") -> str:
    r = await api.post("/fhir/Subscription", json={**subscription(HOOK), "status": status}, headers=who)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _statuses(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    """(subscription id, status) of each SubscriptionStatus in the Bundle."""
    out = []
    for entry in bundle.get("entry", []):
        params = {p["name"]: p for p in entry["resource"]["parameter"]}
        out.append((params["subscription"]["valueReference"]["reference"].rsplit("/", 1)[-1],
                    params["status"]["valueCode"]))
    return out


def missing(sub_id: str) -> dict[str, Any]:
    return outcome("not-found", f"SF-0301: Subscription/{sub_id} is not known", ["id"])


async def test_status_of_named_subscriptions(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    mine = owner(notify_ctx)
    a, b = await _subscribe(api, mine), await _subscribe(api, mine, "off")
    r = await api.get(f"/fhir/Subscription/$status?id={a},{b}", headers=mine)
    assert r.status_code == 200, r.text
    body = r.json()
    status = body["entry"][0]["resource"]
    assert {k: v for k, v in body.items() if k != "entry"} == {
        "resourceType": "Bundle", "type": "searchset", "total": 2,
        "link": [{"relation": "self", "url": f"{FHIR}/Subscription/$status?id={a}%2C{b}"}]}
    assert status == {
        "resourceType": "Parameters", "id": status["id"], "meta": {"profile": [BACKPORT_STATUS]},
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": f"{FHIR}/Subscription/{a}"}},
            {"name": "topic", "valueCanonical": TOPIC + "ed-attendance"},
            {"name": "status", "valueCode": "requested"},
            {"name": "type", "valueCode": "query-status"},
            {"name": "events-since-subscription-start", "valueString": "0"},
        ]}
    assert _statuses(body) == [(a, "requested"), (b, "off")]
    # repeated parameters, a repeated id once, and a status filter
    r = await api.get(f"/fhir/Subscription/$status?id={b}&id={a}&id={b}", headers=mine)
    assert _statuses(r.json()) == [(b, "off"), (a, "requested")]
    r = await api.get(f"/fhir/Subscription/$status?id={a},{b}&status=off", headers=mine)
    assert (r.json()["total"], _statuses(r.json())) == (1, [(b, "off")])
    # the instance level answers the same status
    r = await api.get(f"/fhir/Subscription/{a}/$status", headers=mine)
    assert _statuses(r.json()) == [(a, "requested")]


async def test_all_the_callers_subscriptions(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    mine = owner(notify_ctx)
    a, b = await _subscribe(api, mine), await _subscribe(api, mine, "off")
    theirs = await _subscribe(api, intruder(notify_ctx))
    r = await api.get("/fhir/Subscription/$status", headers=mine)
    assert sorted(_statuses(r.json())) == sorted([(a, "requested"), (b, "off")])
    assert r.json()["total"] == 2
    r = await api.get("/fhir/Subscription/$status?status=requested,active", headers=mine)
    assert _statuses(r.json()) == [(a, "requested")]
    r = await api.get("/fhir/Subscription/$status", headers=intruder(notify_ctx))
    assert _statuses(r.json()) == [(theirs, "requested")]
    r = await api.get("/fhir/Subscription/$status", headers=sibling(notify_ctx))  # same organisation, other client
    assert r.json() == {"resourceType": "Bundle", "type": "searchset", "total": 0,
                        "link": [{"relation": "self", "url": f"{FHIR}/Subscription/$status"}]}
    r = await api.get("/fhir/Subscription/$status")  # admin sees every one
    assert sorted(i for i, _ in _statuses(r.json())) == sorted([a, b, theirs])


async def test_anothers_id_is_not_found_like_an_unknown_one(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    mine = owner(notify_ctx)
    a = await _subscribe(api, mine)
    theirs = await _subscribe(api, intruder(notify_ctx))
    for who in (mine, sibling(notify_ctx)):
        r = await api.get(f"/fhir/Subscription/$status?id={theirs}", headers=who)
        assert (r.status_code, r.json()) == (404, missing(theirs))
        r = await api.get("/fhir/Subscription/$status?id=no-such-sub", headers=who)
        assert (r.status_code, r.json()) == (404, missing("no-such-sub"))
    r = await api.get(f"/fhir/Subscription/$status?id={a},{theirs}", headers=mine)
    assert (r.status_code, r.json()) == (404, missing(theirs))
    r = await api.get(f"/fhir/Subscription/$status?id={a}", headers=sibling(notify_ctx))
    assert (r.status_code, r.json()) == (404, missing(a))


async def test_bad_parameters(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    mine = owner(notify_ctx)
    r = await api.get("/fhir/Subscription/$status?id=a$b", headers=mine)
    assert (r.status_code, r.json()) == (400, outcome(
        "invalid", "SF-0102: 'a$b' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)", ["id"]))
    r = await api.get("/fhir/Subscription/$status?topic=x", headers=mine)
    assert (r.status_code, r.json()) == (400, outcome(
        "not-supported", "SF-0953: Unknown parameter 'topic' for Subscription/$status (known: id, status)",
        ["topic"]))


async def test_more_than_a_page_is_refused(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    mine = owner(notify_ctx)
    limit = notify_ctx.settings.max_count
    notify_ctx.settings.max_count = 2
    try:
        for _ in range(3):
            await _subscribe(api, mine)
        r = await api.get("/fhir/Subscription/$status", headers=mine)
        assert (r.status_code, r.json()) == (400, outcome(
            "too-costly", "SF-0723: $status covers at most 2 Subscriptions; name them with 'id' or narrow with "
                          "'status'"))
        r = await api.get("/fhir/Subscription/$status?status=off", headers=mine)
        assert (r.status_code, r.json()["total"]) == (200, 0)
    finally:
        notify_ctx.settings.max_count = limit
