"""Every interaction (on a type this server serves, with a well-formed id: before those checks there is
nothing to decide) asks the access policy exactly once and leaves exactly one audit record, whatever its
kind and whether it is allowed, refused or fails: the engine's one `authorize` step (app/security/guard.py)
and its audit on the way out. The policy is counted through the app's construction (`AppContext.policy`,
a wrapper of `policy.decide`); audit records are the rows of the audit trail. Both databases."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from app.context import AppContext
from app.main import create_app
from app.security.decision import Decision
from app.security.policy import OPERATIONS, decide
from app.security.principal import ROLES, Principal
from app.storage.audit_tables import audit_event
from tests.conftest import BASE_URL, admin_token
from tests.security.tokens_fixture import Auth
from tests.support.fhir_data import (
    NHS,
    binary_patch,
    flag,
    nhs_query,
    organization,
    outcome,
    patient,
    req,
    tx,
)

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
ED = "Organization/ed-north"


class Counted:
    """The policy's decisions (interaction, type, operation) as the app asked them, and the audit rows."""

    def __init__(self, ctx: AppContext, client: httpx.AsyncClient) -> None:
        self.ctx = ctx
        self.client = client
        self.asked: list[tuple[str, str | None, str | None]] = []

    def policy(self, principal: Principal, interaction: str, resource_type: str | None, *args: Any,
               **kw: Any) -> Decision:
        self.asked.append((interaction, resource_type, kw.get("operation")))
        return decide(principal, interaction, resource_type, *args, **kw)

    async def audit_rows(self) -> int:
        async with self.ctx.sessionmaker() as session:
            return int((await session.execute(select(func.count()).select_from(audit_event))).scalar_one())

    async def once(self, method: str, url: str, status: int, *, times: int = 1, **kw: Any) -> httpx.Response:
        """Send one request; it must answer `status`, ask the policy `times` times and leave as many audit rows."""
        self.asked.clear()
        before = await self.audit_rows()
        r = await self.client.request(method, url, **kw)
        assert r.status_code == status, r.text
        assert len(self.asked) == times, self.asked
        assert await self.audit_rows() - before == times
        return r


@pytest.fixture
async def counted(clean_ctx: AppContext) -> AsyncIterator[Counted]:
    holder: list[Counted] = []
    ctx = dataclasses.replace(clean_ctx, policy=lambda *a, **kw: holder[0].policy(*a, **kw))
    transport = httpx.ASGITransport(app=create_app(ctx=ctx))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL,
                                 headers={"Authorization": f"Bearer {admin_token(ctx)}"}) as client:
        holder.append(Counted(ctx, client))
        yield holder[0]


async def _created(c: Counted, resource: dict[str, Any], **kw: Any) -> str:
    r = await c.once("POST", f"/fhir/{resource['resourceType']}", 201, json=resource, **kw)
    rid: str = r.json()["id"]
    return rid


async def _child(c: Counted) -> str:
    org = await _created(c, organization())
    return await _created(c, patient(managingOrganization={"reference": f"Organization/{org}"}))


ADD_ACTIVE = [{"op": "add", "path": "/active", "value": True}]


async def test_reads_ask_once_and_audit_once(counted: Counted) -> None:
    c = counted
    pid = await _child(c)
    await c.once("GET", f"/fhir/Patient/{pid}", 200)  # read
    await c.once("GET", f"/fhir/Patient/{pid}/_history/1", 200)  # vread
    await c.once("GET", f"/fhir/Patient/{pid}/_history", 200)  # history-instance
    await c.once("GET", "/fhir/Patient/_history", 200)  # history-type
    await c.once("GET", "/fhir/_history", 200)  # history-system
    await c.once("GET", f"/fhir/Patient?{nhs_query('9990000018')}", 200)  # search
    await c.once("POST", "/fhir/Patient/_search", 200, data={"identifier": f"{NHS}|9990000018"})
    await c.once("GET", "/fhir/Patient/nobody", 404)  # a read of nothing is decided (on the type) and audited
    await c.once("GET", f"/fhir/Patient/{pid}/_history/7", 404)
    assert c.asked == [("vread", "Patient", None)]


async def test_writes_ask_once_and_audit_once(counted: Counted) -> None:
    c = counted
    pid = await _child(c)
    assert c.asked == [("create", "Patient", None)]
    body = (await c.client.get(f"/fhir/Patient/{pid}")).json()
    await c.once("PUT", f"/fhir/Patient/{pid}", 200, json={**body, "gender": "female"})  # update
    await c.once("PUT", "/fhir/Patient/p-new", 201, json=patient("9990000026", id="p-new"))  # update as create
    assert c.asked == [("update", "Patient", None)]
    await c.once("POST", "/fhir/Patient", 200, json=patient(), headers={"If-None-Exist": nhs_query("9990000018")})
    await c.once("PUT", f"/fhir/Patient?{nhs_query('9990000018')}", 200,
                 json={**body, "gender": "male"})  # conditional update
    await c.once("PUT", f"/fhir/Patient?{nhs_query('9990000034')}", 201, json=patient("9990000034"))
    await c.once("PATCH", f"/fhir/Patient/{pid}", 200, content=orjson.dumps(ADD_ACTIVE), headers=JSON_PATCH)
    assert c.asked == [("patch", "Patient", None)]
    await c.once("PATCH", f"/fhir/Patient/{pid}", 200, content=b'{"active": false}', headers=MERGE_PATCH)
    await c.once("PATCH", f"/fhir/Patient?{nhs_query('9990000018')}", 200, content=b'{"gender": "other"}',
                 headers=MERGE_PATCH)  # conditional patch
    await c.once("DELETE", "/fhir/Patient/p-new", 204)
    await c.once("DELETE", f"/fhir/Patient?{nhs_query('9990000034')}", 204)  # conditional delete
    await c.once("DELETE", f"/fhir/Patient?{nhs_query('9990000034')}", 204)  # ... of nothing
    await c.once("PUT", "/fhir/Patient/p-new", 201, json=patient("9990000026", id="p-new"))  # brought back


async def test_refused_and_failed_interactions_ask_once_and_audit_once(counted: Counted, auth: Auth) -> None:
    c = counted
    pid = await _child(c)
    ed, hv = auth("ed-clinician", org=ED, care_setting="310000008"), auth("health-visitor", org="Organization/hv")
    enc = await _created(c, {
        "resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
        "subject": {"reference": f"Patient/{pid}"}, "serviceProvider": {"reference": ED}}, headers=ed)
    r = await c.once("GET", f"/fhir/Encounter/{enc}", 404, headers=hv)  # outside the reader's reach
    assert r.json() == outcome("not-found", f"SF-0301: Encounter/{enc} is not known", ["id"])
    await c.once("GET", "/fhir/AuditEvent", 403, headers=ed)  # a type the role may not read
    await c.once("DELETE", f"/fhir/Encounter/{enc}", 403, headers=ed)  # only admin deletes
    r = await c.once("DELETE", "/fhir/Flag/f1", 405)  # no one deletes a Flag: answered before the lookup
    assert r.json() == outcome("not-supported", "SF-0405: Flag resources are never deleted; change their status instead")
    r = await c.once("POST", "/fhir/AuditEvent", 405, json={"resourceType": "AuditEvent"})  # before the body's faults
    assert r.json()["issue"][0]["diagnostics"].startswith("SF-0406: AuditEvent is written by the server only")
    await c.once("POST", "/fhir/Patient", 400, json={"resourceType": "Patient", "gender": 7})  # an invalid body
    await c.once("PATCH", f"/fhir/Patient/{pid}", 400, content=b"[{}]", headers=JSON_PATCH)  # a patch that cannot apply
    r = await c.once("PATCH", f"/fhir/Patient/{pid}", 403, content=b"[{}]", headers={**JSON_PATCH, **hv})
    assert r.json() == outcome("forbidden", "SF-0800: Role health-visitor may not update Patient resources")
    await c.once("PUT", f"/fhir/Patient/{pid}", 400, json={"resourceType": "Patient", "id": pid},
                 headers={"If-Match": "version one"})
    await c.once("DELETE", "/fhir/Patient?shoe-size=9", 400)  # criteria that cannot select


async def test_operations_ask_once_and_audit_once(counted: Counted, auth: Auth) -> None:
    c = counted
    pid = await _child(c)
    author = await _created(c, organization("Children's Social Care"))
    await _created(c, flag(f"Patient/{pid}", f"Organization/{author}"))
    await c.once("GET", f"/fhir/Patient/{pid}/$safeguarding-summary", 200)
    assert c.asked == [("read", "Patient", "safeguarding-summary")]
    await c.once("GET", f"/fhir/Patient/{pid}/$safeguarding-summary", 403,
                 headers=auth("mash-practitioner", org="Organization/la"))  # the role may not use it: audited too
    await c.once("GET", "/fhir/Patient/nobody/$safeguarding-summary", 404)
    await c.once("GET", "/fhir/$governance-report?month=2026-01", 200)
    assert c.asked == [("operation", None, "governance-report")]
    await c.once("GET", "/fhir/$governance-report?month=2026-01", 403, headers=auth("health-visitor", org="Organization/hv"))
    await c.once("GET", "/fhir/DocumentReference/$qa-queue", 200)
    assert c.asked == [("search", "DocumentReference", None)]


async def test_transaction_and_batch_entries_ask_once_each(counted: Counted) -> None:
    c = counted
    pid = await _child(c)
    other = await _created(c, patient("9990000042"))
    bundle = tx(
        req("POST", "Patient", patient("9990000026")),
        req("PUT", f"Patient/{pid}", {**patient(), "id": pid, "gender": "female"}),
        req("PATCH", f"Patient/{other}", binary_patch(ADD_ACTIVE)),
        req("GET", f"Patient/{pid}"),
        req("GET", f"Patient?{nhs_query('9990000018')}"),
    )
    await c.once("POST", "/fhir", 200, json=bundle, times=5)
    assert sorted(a for a, _t, _o in c.asked) == ["create", "patch", "read", "search", "update"]
    batch = tx(req("GET", f"Patient/{pid}"), req("DELETE", "Flag/f1"), kind="batch")
    r = await c.once("POST", "/fhir", 200, json=batch, times=2)
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["200 OK", "405 Method Not Allowed"]


async def test_validate_of_an_instance_asks_once(counted: Counted, auth: Auth) -> None:
    """`$validate` of an instance is decided once, as the interaction it asks about, on the stored record
    (a faulty body as an unchanged update); audited once, as a read of the record."""
    c = counted
    pid = await _child(c)
    body = (await c.client.get(f"/fhir/Patient/{pid}")).json()
    cases: list[tuple[str, dict[str, Any] | None, int, str]] = [
        ("", {**body, "gender": "female"}, 200, "update"),
        ("", {**body, "gender": 7}, 200, "update"),  # the body's issues, once the policy allowed
        ("?mode=profile", body, 200, "read"),
        ("?mode=delete", None, 200, "delete"),
    ]
    for mode, sent, status, interaction in cases:
        await c.once("POST", f"/fhir/Patient/{pid}/$validate{mode}", status, json=sent)
        assert c.asked == [(interaction, "Patient", None)], mode
    await c.once("POST", "/fhir/Patient/nobody/$validate", 404, json={**body, "id": "nobody"})
    await c.once("POST", f"/fhir/Patient/{pid}/$validate", 403, json=body,
                 headers=auth("health-visitor", org="Organization/hv"))
    r = await c.once("POST", "/fhir/Flag/f1/$validate?mode=delete", 200)  # no one may: the verdict
    assert r.json() == outcome("not-supported", "SF-0405: Flag resources are never deleted; change their status instead")
    assert c.asked == [("delete", "Flag", None)]


async def _last_audit(c: Counted) -> dict[str, Any]:
    async with c.ctx.sessionmaker() as session:
        content = (await session.execute(
            select(audit_event.c.content).order_by(audit_event.c.seq.desc()).limit(1))).scalar_one()
    event: dict[str, Any] = content
    return event


def _operation_audit(event: dict[str, Any]) -> tuple[Any, ...]:
    """What an AuditEvent says about the access: type, subtype, action, outcome, why, and its entities
    (their roles and what they name: the query entity's text, never a body)."""
    return (event["type"], event["subtype"], event["action"], event["outcome"], event["outcomeDesc"],
            [(e["role"]["code"] if "role" in e else e["type"]["code"], e.get("description")) for e in event["entity"]])


REST = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
        "display": "Restful Operation"}
OPERATION = [{"system": "http://hl7.org/fhir/restful-interaction", "code": "operation", "display": "operation"}]
VALID = outcome("informational", "SF-0002: Validation successful: no errors found", severity="information")


async def test_validate_of_a_type_asks_once_and_audits_once(counted: Counted) -> None:
    """`$validate` on a type is decided once, as the operation `validate` on the type, and audited once as
    that operation with its query; the body is neither stored nor recorded, valid or not."""
    c = counted
    before = (await c.client.get("/fhir/Patient")).json()["total"]
    r = await c.once("POST", "/fhir/Patient/$validate?mode=create", 200, json=patient("9990000026", family="Secret"))
    assert r.json() == VALID
    assert c.asked == [("operation", "Patient", "validate")]
    event = await _last_audit(c)
    assert _operation_audit(event) == (REST, OPERATION, "E", "0", "Success", [
        ("24", "Patient/$validate?mode=create"), ("XrequestId", None)])
    assert "Secret" not in orjson.dumps(event).decode() and "9990000026" not in orjson.dumps(event).decode()
    r = await c.once("POST", "/fhir/Patient/$validate", 200, json={**patient(), "gender": "shoe"})  # its issues
    assert r.json()["issue"][0]["severity"] == "error"
    assert c.asked == [("operation", "Patient", "validate")]
    r = await c.once("POST", "/fhir/Patient/$validate?mode=bogus", 400, json=patient())  # a failed one too
    assert c.asked == [("operation", "Patient", "validate")]
    assert _operation_audit(await _last_audit(c))[3] == "4"
    assert (await c.client.get("/fhir/Patient")).json()["total"] == before  # nothing stored


async def test_validate_of_a_type_is_open_to_every_role(counted: Counted, auth: Auth) -> None:
    """The policy's `validate` entry allows every role (it reads and writes nothing)."""
    c = counted
    for role in ROLES:
        r = await c.once("POST", "/fhir/Patient/$validate", 200, json=patient(), headers=auth(role, org="Organization/x"))
        assert r.json() == VALID, role


async def test_validate_of_a_type_refused_by_the_policy(counted: Counted, auth: Auth,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A role the policy's `validate` entry leaves out gets the policy's 403 and no validation result, and
    the refusal is audited once (the entry narrowed here: the shipped policy allows every role)."""
    c = counted
    monkeypatch.setitem(OPERATIONS, "validate", frozenset(ROLES) - {"mash-practitioner"})
    r = await c.once("POST", "/fhir/Patient/$validate", 403, json={**patient(), "gender": "shoe"},
                     headers=auth("mash-practitioner", org="Organization/la"))
    assert r.json() == outcome("forbidden", "SF-0805: Role mash-practitioner may not use validate")
    assert c.asked == [("operation", "Patient", "validate")]
    assert _operation_audit(await _last_audit(c)) == (
        REST, OPERATION, "E", "4", "Role mash-practitioner may not use validate",
        [("24", "Patient/$validate"), ("XrequestId", None)])
