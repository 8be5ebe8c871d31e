"""Passing a notice to a colleague: a health visitor or school nurse may change her notice Task's owner
to another PractitionerRole (or Practitioner) of her own team, and nothing else, through PUT and PATCH;
everything else is refused with an exact OperationOutcome and changes nothing (both databases)."""

from __future__ import annotations

from typing import Any

import httpx

from app.context import AppContext
from app.demo import borough as b
from app.security.policy import decide
from app.security.principal import Principal
from app.web import notices
from tests.conftest import StepClock
from tests.support.fhir_data import outcome
from tests.web.pages_data import HV, OTHER, OTHER_HV, OTHER_ORG, attend, ed, principal, seed

Auth = Any
HV2 = "PractitionerRole/demo-hv2"
PATCH = "application/json-patch+json"
NOT_A_COLLEAGUE = ("SF-0806: A Task may be passed only to a colleague of your own team (a PractitionerRole of "
                   f"{b.ZERO19})")
ONLY_STATUS = ("SF-0804: this role may change only the status of a Task (businessStatus, executionPeriod, "
               "lastModified, status, statusReason) and pass it to a colleague of their team (owner)")


def hv(auth: Auth) -> dict[str, str]:
    return dict(auth("health-visitor", org=b.ZERO19, practitioner=b.HV))


async def notice_task(client: httpx.AsyncClient, auth: Auth) -> dict[str, Any]:
    """The health visitor's acknowledgement Task of a new ED attendance, as she reads it."""
    encounter = await attend(client, ed(auth), "2026-01-05T08:30:00Z")
    comm = (await client.get(f"/fhir/Communication?encounter=Encounter/{encounter}")).json()["entry"][0]["resource"]
    found = (await client.get(f"/fhir/Task?focus=Communication/{comm['id']}", headers=hv(auth))).json()
    task: dict[str, Any] = found["entry"][0]["resource"]
    assert task["owner"] == {"reference": b.HV}
    return task


async def open_ids(ctx: AppContext, who: Principal, clock: StepClock) -> list[str]:
    async with ctx.unit_of_work(who) as svc:
        return [n.task_id for n in (await notices.open_notices(svc, notices.own_refs(svc), clock.now())).rows]


async def unchanged(client: httpx.AsyncClient, task: dict[str, Any]) -> None:
    stored = (await client.get(f"/fhir/Task/{task['id']}")).json()
    assert (stored["meta"]["versionId"], stored["owner"]) == (task["meta"]["versionId"], task["owner"])


async def test_she_passes_her_notice_to_a_colleague_by_put_and_it_moves_lists(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await seed(client, clock.now().date())
    task = await notice_task(client, auth)
    hv2 = principal("health-visitor", b.ZERO19, HV2)
    assert (await open_ids(clean_ctx, HV, clock), await open_ids(clean_ctx, hv2, clock)) == ([task["id"]], [])
    r = await client.put(f"/fhir/Task/{task['id']}", json={**task, "owner": {"reference": HV2}}, headers=hv(auth))
    assert r.status_code == 200, r.text
    assert (r.json()["owner"], r.json()["status"], r.json()["meta"]["versionId"]) == ({"reference": HV2}, "requested", "2")
    assert (await open_ids(clean_ctx, HV, clock), await open_ids(clean_ctx, hv2, clock)) == ([], [task["id"]])
    lead = auth("safeguarding-lead", org=b.ZERO19, practitioner=b.LEAD)
    audit = (await client.get(f"/fhir/AuditEvent?entity=Task/{task['id']}&_count=100", headers=lead)).json()
    updates = [e["resource"] for e in audit.get("entry") or []
               if (e["resource"].get("subtype") or [{}])[0].get("code") == "update"]
    assert [(e["outcome"], e["agent"][0]["who"]["identifier"]["value"]) for e in updates] == [("0", "test-health-visitor")]


async def test_she_passes_it_by_patch_with_a_status_change(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await seed(client, clock.now().date())
    task = await notice_task(client, auth)
    ops = [{"op": "replace", "path": "/owner", "value": {"reference": HV2}},
           {"op": "replace", "path": "/status", "value": "accepted"}]
    r = await client.patch(f"/fhir/Task/{task['id']}", json=ops, headers={**hv(auth), "Content-Type": PATCH})
    assert r.status_code == 200, r.text
    assert (r.json()["owner"], r.json()["status"]) == ({"reference": HV2}, "accepted")


async def test_she_cannot_pass_it_outside_her_team_nor_change_anything_else(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await seed(client, clock.now().date())
    task = await notice_task(client, auth)
    url, headers = f"/fhir/Task/{task['id']}", hv(auth)
    for owner in ({"reference": OTHER_HV}, {"reference": b.ZERO19}, {"display": "Harriet Second"}):
        r = await client.put(url, json={**task, "owner": owner}, headers=headers)
        assert (r.status_code, r.json()) == (403, outcome("forbidden", NOT_A_COLLEAGUE, ["Task.owner"])), owner
    ops = [{"op": "replace", "path": "/owner", "value": {"reference": OTHER_HV}}]
    r = await client.patch(url, json=ops, headers={**headers, "Content-Type": PATCH})
    assert (r.status_code, r.json()) == (403, outcome("forbidden", NOT_A_COLLEAGUE, ["Task.owner"]))
    r = await client.put(url, json={**task, "owner": {"reference": HV2}, "priority": "urgent"}, headers=headers)
    assert (r.status_code, r.json()) == (403, outcome("forbidden", ONLY_STATUS))
    ops = [{"op": "remove", "path": "/owner"}]
    r = await client.patch(url, json=ops, headers={**headers, "Content-Type": PATCH})
    assert (r.status_code, r.json()) == (403, outcome("forbidden", NOT_A_COLLEAGUE, ["Task.owner"]))
    await unchanged(client, task)


async def test_another_organisations_health_visitor_cannot_take_or_pass_the_notice(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Auth
) -> None:
    await seed(client, clock.now().date())
    task = await notice_task(client, auth)
    other = auth("health-visitor", org=OTHER_ORG, practitioner=OTHER_HV)
    for owner in (OTHER_HV, HV2):
        r = await client.put(f"/fhir/Task/{task['id']}", json={**task, "owner": {"reference": owner}}, headers=other)
        assert (r.status_code, r.json()) == (404, outcome("not-found", f"SF-0301: Task/{task['id']} is not known", ["id"]))
    assert await open_ids(clean_ctx, OTHER, clock) == []
    await unchanged(client, task)


def test_the_handover_rule_reads_the_team_from_the_principal() -> None:
    task = {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order",
            "owner": {"reference": b.HV}}
    team = frozenset({b.ZERO19, b.HV, HV2, "Practitioner/demo-hv2-person"})
    nurse = principal("school-nurse", b.ZERO19, b.HV).with_refs(org_refs=team)
    for owner in (HV2, "Practitioner/demo-hv2-person"):
        assert decide(nurse, "update", "Task", {**task, "owner": {"reference": owner}}, current=task).allowed
    refused = decide(nurse, "update", "Task", {**task, "owner": {"reference": OTHER_HV}}, current=task)
    assert (refused.status, refused.msg_id, refused.expression) == (403, "SF-0806", "Task.owner")
    ed_nurse = principal("ed-clinician", b.ED, b.ED_NURSE).with_refs(org_refs=frozenset({b.ED, b.ED_NURSE}))
    assert decide(ed_nurse, "update", "Task", {**task, "owner": {"reference": b.ED_NURSE}}, current=task).status == 403
