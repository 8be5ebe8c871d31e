"""A Subscription is its creator's (organisation and client): anyone else gets 404 for it, whatever the
interaction or operation, searches and histories never show or count it, and only admin manages every
Subscription. Changes of its status or endpoint are audited where the organisation's safeguarding lead
finds them. Both databases."""

from __future__ import annotations

from typing import Any

import httpx

from app.context import AppContext
from tests.notify.conftest import SECRET, subscription
from tests.notify.owners import (
    ELSEWHERE,
    HV_ORG,
    bearer,
    health_visitor,
    intruder,
    lead,
    owner,
    sibling,
)
from tests.support.fhir_data import outcome

HOOK = "http://127.0.0.1/hook"  # nothing is delivered in these tests
CREATOR = "https://fhir.safeflag.example/CodeSystem/created-by-client"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def missing(sub_id: str) -> dict[str, Any]:
    return outcome("not-found", f"SF-0301: Subscription/{sub_id} is not known", ["id"])


async def _hv_subscription(api: httpx.AsyncClient, ctx: AppContext) -> dict[str, Any]:
    body = subscription(HOOK, filters=("Communication?recipient=PractitionerRole/hv-1",))
    r = await api.post("/fhir/Subscription", json=body, headers=owner(ctx))
    assert r.status_code == 201, r.text
    return dict(r.json())


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "Subscription"]


async def test_others_get_404_for_every_interaction(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    sub = await _hv_subscription(api, notify_ctx)
    sid = sub["id"]
    assert sub["meta"]["tag"] == [{"system": CREATOR, "code": "hv-epr"}]
    moved = {**subscription("http://127.0.0.1/elsewhere"), "id": sid}
    for who in (intruder(notify_ctx), sibling(notify_ctx)):
        for method, path, kw in [
            ("GET", f"/fhir/Subscription/{sid}", {}),
            ("GET", f"/fhir/Subscription/{sid}/_history/1", {}),
            ("GET", f"/fhir/Subscription/{sid}/_history", {}),
            ("PUT", f"/fhir/Subscription/{sid}", {"json": moved}),
            ("PATCH", f"/fhir/Subscription/{sid}",
             {"json": [{"op": "replace", "path": "/status", "value": "off"}], "headers": JSON_PATCH}),
            ("PATCH", f"/fhir/Subscription/{sid}", {"json": [{"op": "bogus"}], "headers": JSON_PATCH}),
            ("PATCH", f"/fhir/Subscription/{sid}", {"json": [{"op": "replace", "path": "/status", "value": "off"}],
                                                    "headers": {**JSON_PATCH, "If-Match": 'W/"9"'}}),
            ("PUT", f"/fhir/Subscription/{sid}", {"json": moved, "headers": {"If-Match": 'W/"9"'}}),
            ("DELETE", f"/fhir/Subscription/{sid}", {"headers": {"If-Match": 'W/"9"'}}),
            ("DELETE", f"/fhir/Subscription/{sid}", {}),
            ("GET", f"/fhir/Subscription/{sid}/$status", {}),
            ("GET", f"/fhir/Subscription/{sid}/$events?content=full-resource", {}),
            ("POST", f"/fhir/Subscription/{sid}/$get-ws-binding-token", {}),
            ("POST", "/fhir/Subscription/$get-ws-binding-token",
             {"json": {"resourceType": "Parameters", "parameter": [{"name": "id", "valueString": sid}]}}),
        ]:
            headers = {**who, **kw.pop("headers", {})}
            r = await api.request(method, path, headers=headers, **kw)
            assert (r.status_code, r.json()) == (404, missing(sid)), (method, path)
        for path in ("/fhir/Subscription", "/fhir/Subscription?_summary=count", "/fhir/Subscription?_total=accurate",
                     "/fhir/Subscription/_history", "/fhir/_history", f"/fhir/Subscription?_id={sid}",
                     "/fhir/Subscription?url=http://127.0.0.1/hook"):
            r = await api.get(path, headers=who)
            assert r.status_code == 200, (path, r.text)
            entries = str(r.json().get("entry", []))
            assert sid not in entries and "hook" not in entries, path
            assert r.json().get("total", 0) == 0, path
    # nothing changed: the creator reads its subscription as it made it
    r = await api.get(f"/fhir/Subscription/{sid}", headers=owner(notify_ctx))
    assert r.status_code == 200 and r.json() == sub


async def test_people_of_the_organisation_may_not_touch_subscriptions(
    api: httpx.AsyncClient, notify_ctx: AppContext
) -> None:
    sid = (await _hv_subscription(api, notify_ctx))["id"]
    for role, who in (("health-visitor", health_visitor(notify_ctx)), ("safeguarding-lead", lead(notify_ctx))):
        r = await api.get(f"/fhir/Subscription/{sid}", headers=who)
        assert (r.status_code, r.json()) == (403, outcome(
            "forbidden", f"SF-0800: Role {role} may not read Subscription resources")), role
        r = await api.get("/fhir/Subscription", headers=who)
        assert (r.status_code, r.json()) == (403, outcome(
            "forbidden", f"SF-0800: Role {role} may not search Subscription resources")), role


async def test_the_creator_and_admin_manage_it(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    sub = await _hv_subscription(api, notify_ctx)
    sid, mine = sub["id"], owner(notify_ctx)
    # the creator lists and counts its own
    listed = (await api.get("/fhir/Subscription?_total=accurate", headers=mine)).json()
    assert (_ids(listed), listed["total"]) == ([sid], 1)
    # a client's tag naming someone else is not taken: the creator stays
    forged = {**subscription(HOOK), "meta": {"tag": [{"system": CREATOR, "code": "hv-epr"}]}}
    r = await api.post("/fhir/Subscription", json=forged, headers=intruder(notify_ctx))
    assert r.status_code == 201 and r.json()["meta"]["tag"] == [{"system": CREATOR, "code": "intruder"}]
    other = r.json()["id"]
    r = await api.get(f"/fhir/Subscription/{other}", headers=mine)
    assert (r.status_code, r.json()) == (404, missing(other))
    # admin sees every subscription and may change one; the creator stays its owner
    everything = (await api.get("/fhir/Subscription?_total=accurate")).json()
    assert (sorted(_ids(everything)), everything["total"]) == (sorted([sid, other]), 2)
    body = {**subscription("http://localhost/hook"), "id": sid,
            "meta": {"tag": [{"system": CREATOR, "code": "admin-took-it"}]}}
    r = await api.put(f"/fhir/Subscription/{sid}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["tag"] == [{"system": CREATOR, "code": "hv-epr"}]
    r = await api.get(f"/fhir/Subscription/{sid}", headers=mine)
    assert r.status_code == 200 and r.json()["channel"]["endpoint"] == "http://localhost/hook"
    # the creator switches it off and deletes it; then it is gone for the creator and unknown to others
    r = await api.patch(f"/fhir/Subscription/{sid}", headers={**mine, **JSON_PATCH},
                        json=[{"op": "replace", "path": "/status", "value": "off"}])
    assert (r.status_code, r.json()["status"]) == (200, "off")
    assert (await api.delete(f"/fhir/Subscription/{sid}", headers=mine)).status_code == 204
    assert (await api.get(f"/fhir/Subscription/{sid}", headers=mine)).status_code == 410
    r = await api.get(f"/fhir/Subscription/{sid}", headers=intruder(notify_ctx))
    assert (r.status_code, r.json()) == (404, missing(sid))
    # and nobody else brings it back as theirs (with their endpoint, delivered as the creator)
    r = await api.put(f"/fhir/Subscription/{sid}", json={**subscription(HOOK), "id": sid},
                      headers=intruder(notify_ctx))
    assert (r.status_code, r.json()) == (404, missing(sid))
    assert (await api.get(f"/fhir/Subscription/{sid}", headers=mine)).status_code == 410


async def test_changes_of_status_and_endpoint_reach_the_lead(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    """The lead may not read the team's subscriptions, but every change of one is an AuditEvent naming
    the team as the subscriber, with what changed (never the endpoint itself)."""
    sid = (await _hv_subscription(api, notify_ctx))["id"]
    r = await api.put(f"/fhir/Subscription/{sid}", json={**subscription("http://localhost/other"), "id": sid})
    assert r.status_code == 200, r.text
    r = await api.patch(f"/fhir/Subscription/{sid}", headers={**owner(notify_ctx), **JSON_PATCH},
                        json=[{"op": "replace", "path": "/status", "value": "off"}])
    assert r.status_code == 200, r.text
    r = await api.get(f"/fhir/Subscription/{sid}", headers=intruder(notify_ctx))  # refused: audited too
    assert r.status_code == 404
    found = await api.get(f"/fhir/AuditEvent?entity={HV_ORG}&_sort=date", headers=lead(notify_ctx))
    assert found.status_code == 200, found.text
    events = [e["resource"] for e in found.json()["entry"] if e["resource"]["resourceType"] == "AuditEvent"]
    summary = [(e["subtype"][0]["code"], e["entity"][0]["what"]["reference"], e["entity"][0].get("detail"),
                e["agent"][0]["altId"]) for e in events]
    assert summary == [
        ("create", f"Subscription/{sid}/_history/1",
         [{"type": "status", "valueString": "(none) -> requested"},
          {"type": "channel.endpoint", "valueString": "set"}, {"type": "criteria", "valueString": "set"}], "hv-epr"),
        ("update", f"Subscription/{sid}/_history/2",
         [{"type": "channel.endpoint", "valueString": "changed"}, {"type": "criteria", "valueString": "changed"}],
         "test-admin"),
        ("patch", f"Subscription/{sid}/_history/3", [{"type": "status", "valueString": "requested -> off"}],
         "hv-epr"),
    ]
    for e in events:
        assert e["entity"][1] == {
            "what": {"reference": HV_ORG},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "3",
                     "display": "Organization"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "9",
                     "display": "Subscriber"},
        }
        assert "127.0.0.1" not in str(e["entity"]) and "localhost/other" not in str(e["entity"])
    # the refused attempt is audited as one on the subscription
    tried = (await api.get(f"/fhir/AuditEvent?entity=Subscription/{sid}&outcome=4", headers=lead(notify_ctx))).json()
    assert [(e["resource"]["outcome"], e["resource"]["agent"][0]["altId"]) for e in tried["entry"]] == [
        ("4", "intruder")]


async def test_secret_and_state_follow_the_creator(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    """Deliveries are authorised as the creator: an admin's change does not make them the admin's."""
    from sqlalchemy import select

    from app.storage.notify_tables import subscription_state

    sid = (await _hv_subscription(api, notify_ctx))["id"]
    await api.put(f"/fhir/Subscription/{sid}", json={**subscription("http://localhost/hook", secret=SECRET),
                                                     "id": sid})
    async with notify_ctx.sessionmaker() as session:
        claims = (await session.execute(select(subscription_state.c.owner).where(
            subscription_state.c.sub_id == sid))).scalar_one()
    assert (claims["sub"], claims["role"], claims["org"]) == ("hv-epr", "system", HV_ORG)
    assert ELSEWHERE not in str(claims) and bearer
