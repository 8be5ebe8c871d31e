"""`$events` is authorised for its caller: only the Subscription's creator (or admin) may call it, it
answers only what the caller may read, event by event, and `content` narrows the Subscription's own
payload but never widens it. Both databases."""

from __future__ import annotations

from typing import Any

import httpx

from app.context import AppContext
from app.notify import operations
from app.notify.dispatcher import Dispatcher
from app.security.principal import Principal
from app.security.scopes import ScopeSet
from app.storage.repository import Repository
from tests.conftest import FHIR
from tests.notify.conftest import subscription
from tests.notify.owners import ELSEWHERE, SH_ORG, intruder, owner, sexual_health
from tests.support.fhir_data import flag, outcome, patient

HOOK = "http://127.0.0.1/hook"  # events are matched, never delivered, in these tests
RESTRICTED = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


async def _child(api: httpx.AsyncClient) -> str:
    r = await api.post("/fhir/Patient", json=patient("9990000018"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _flag_subscription(child: str, content: str) -> dict[str, Any]:
    return subscription(HOOK, topic="safeguarding-flag", filters=(f"Flag?patient=Patient/{child}",), content=content)


def _events(bundle: dict[str, Any]) -> list[list[str]]:
    """Per notification-event, the names of its parts; then the other entries' (fullUrl, has resource)."""
    params = bundle["entry"][0]["resource"]["parameter"]
    return [[p["name"] for p in param["part"]] for param in params if param["name"] == "notification-event"]


def _entries(bundle: dict[str, Any]) -> list[tuple[str, bool]]:
    return [(e["fullUrl"], "resource" in e) for e in bundle["entry"][1:]]


async def test_events_of_an_admins_subscription_are_not_anyones(
    api: httpx.AsyncClient, notify_ctx: AppContext, dispatcher: Dispatcher
) -> None:
    """The attack: another organisation's client with only `system/Subscription.rs` asked an admin's
    id-only subscription for `$events?content=full-resource` and got a restricted Flag."""
    child = await _child(api)
    r = await api.post("/fhir/Subscription", json=_flag_subscription(child, "id-only"))
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = await api.post("/fhir/Flag", json=flag(f"Patient/{child}", SH_ORG), headers=sexual_health(notify_ctx))
    assert r.status_code == 201, r.text
    hidden = r.json()
    assert {"system": RESTRICTED, "code": "R"} in [
        {k: c[k] for k in ("system", "code")} for c in hidden["meta"]["security"]]
    await dispatcher.match_once()
    snoop = intruder(notify_ctx, scope="system/Subscription.rs")
    r = await api.get(f"/fhir/Flag/{hidden['id']}", headers=snoop)
    assert r.status_code == 403
    r = await api.get(f"/fhir/Subscription/{sid}/$events?content=full-resource", headers=snoop)
    assert (r.status_code, r.json()) == (404, outcome("not-found", f"SF-0301: Subscription/{sid} is not known", ["id"]))
    # the admin who owns it sees the event, but only as its id-only payload, whatever `content` asks
    r = await api.get(f"/fhir/Subscription/{sid}/$events?content=full-resource")
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert _events(bundle) == [["event-number", "timestamp", "focus", "additional-context"]]
    assert _entries(bundle) == [(f"{FHIR}/Flag/{hidden['id']}", False)]
    assert "outcome" not in bundle["entry"][0]["response"]


async def test_content_narrows_and_the_caller_is_authorised_again(
    api: httpx.AsyncClient, notify_ctx: AppContext, dispatcher: Dispatcher
) -> None:
    child = await _child(api)
    mine = owner(notify_ctx)
    r = await api.post("/fhir/Subscription", json=_flag_subscription(child, "full-resource"), headers=mine)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    seen = (await api.post("/fhir/Flag", json=flag(f"Patient/{child}", ELSEWHERE))).json()
    # a restricted Flag the creator may not read is never matched for it at all
    r = await api.post("/fhir/Flag", json=flag(f"Patient/{child}", SH_ORG), headers=sexual_health(notify_ctx))
    assert r.status_code == 201, r.text
    await dispatcher.match_once()
    url = f"/fhir/Subscription/{sid}/$events"
    full = (await api.get(url, headers=mine)).json()
    assert _events(full) == [["event-number", "timestamp", "focus", "additional-context"]]
    assert _entries(full) == [(f"{FHIR}/Flag/{seen['id']}", True)]
    assert full["entry"][1]["resource"] == seen
    narrow = (await api.get(url + "?content=id-only", headers=mine)).json()
    assert _entries(narrow) == [(f"{FHIR}/Flag/{seen['id']}", False)]
    empty = (await api.get(url + "?content=empty", headers=mine)).json()
    assert (_events(empty), _entries(empty)) == ([["event-number", "timestamp"]], [])
    # the same client with a token that may no longer read Flags: the event keeps its number only
    r = await api.get(url, headers=owner(notify_ctx, scope="system/Subscription.rs"))
    assert r.status_code == 200, r.text
    assert (_events(r.json()), _entries(r.json())) == ([["event-number", "timestamp"]], [])
    assert "outcome" not in r.json()["entry"][0]["response"]  # hidden, not withheld: nothing is counted


async def test_restricted_events_are_withheld_with_the_search_notice(
    api: httpx.AsyncClient, notify_ctx: AppContext, dispatcher: Dispatcher
) -> None:
    """A caller that may read Flags but not restricted ones (not cleared, not the authoring organisation)
    gets the event's number and time and the notice a search gives (which carries no number)."""
    child = await _child(api)
    r = await api.post("/fhir/Subscription", json=_flag_subscription(child, "full-resource"))
    sid = r.json()["id"]
    await api.post("/fhir/Flag", json=flag(f"Patient/{child}", SH_ORG), headers=sexual_health(notify_ctx))
    await dispatcher.match_once()
    caller = Principal(sub="intruder", role="system", scopes=ScopeSet.parse("system/*.rs", base=FHIR), issuer="t",
                       org=ELSEWHERE, org_refs=frozenset({ELSEWHERE}))
    async with notify_ctx.sessionmaker() as session:
        sub = await Repository(session, clock=notify_ctx.clock, ids=notify_ctx.ids,  # type: ignore[arg-type]
                               indexer=notify_ctx.indexer).get("Subscription", sid)
        assert sub is not None
        bundle = await operations.events(session, sub, FHIR, since=None, until=None, content=None, caller=caller,
                                         now=notify_ctx.clock.now())
    assert (_events(bundle), _entries(bundle)) == ([["event-number", "timestamp"]], [])
    assert bundle["entry"][0]["response"] == {"status": "200", "outcome": {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "suppressed", "diagnostics": (
            "SF-0820: Restricted records about the patient(s) of this search were withheld from this result. "
            "Restricted records are visible only to safeguarding leads and to the organisation that wrote them; "
            "ask your safeguarding lead if you need to know what they hold")}]}}
