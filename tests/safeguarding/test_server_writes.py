"""The resources SafeFlag writes itself meet the same profiles as the same resource sent over the API.

1. Every kind is produced by the flows that write it (ED attendance, did-not-wait and think-family
   notices with their acknowledgement Tasks, an escalation and the escalated Task, an access
   notification, a referral copy's Binary link and the superseded copy, a Subscription the dispatcher
   activates) and every stored version is validated with the server's own validator: zero issues,
   not even a warning (tests/hapi checks the same kinds with HAPI's validator). Both databases.
2. A server-written resource that fails its profile is a server bug: with a profile folder
   (`SAFEFLAG_PROFILES_DIR`) whose safeguarding-task profile asks for a `Task.note` the acknowledgement
   Task never has, an ED attendance answers 500 with the request id, nothing of it is stored, and an
   ERROR log line names the profile and the issue. A real `safeflag serve` process on both databases.
3. The escalation timer goes on past an escalation that fails its profile. Both databases.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from app.context import AppContext
from app.fhir.profiles import use_profiles
from app.fhir.profiles.store import PROFILES_DIR
from app.fhir.validation import validate_resource
from app.notify.delivery import RetryPolicy
from app.notify.dispatcher import Dispatcher
from app.safeguarding.escalation import escalate_overdue
from app.storage.tables import resource_version
from tests.e2e.crash import database  # noqa: F401  (fixture: SQLite, or a fresh PostgreSQL database)
from tests.e2e.server import start_server
from tests.hapi.emitted_data import (
    ACT_CODE,
    CHILD,
    CS,
    ED,
    ED_CARE_SETTING,
    NHS,
    SD,
    SNOMED,
    TASK,
    ZERO19,
    example,
    flag,
    organization,
    referral_transaction,
    subscription,
)
from tests.security.tokens_fixture import Auth
from tests.support.receiver import Receiver

ATTENDED = "2026-01-05T08:00:00Z"


def encounter(subject: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "finished", "class": {"system": ACT_CODE, "code": "EMER"},
            "subject": subject, "period": {"start": ATTENDED}, "serviceProvider": {"reference": ED}, **extra}


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = r.json()
    return out


async def post(client: httpx.AsyncClient, resource: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = await client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def world(client: httpx.AsyncClient) -> None:
    """The child (with a CareTeam naming a health visitor and a lead), the father as a patient, the
    organisations; the same reference data as tests/hapi/emitted.py."""
    for org in (organization("example-local-authority", "Example Borough Children's Services", "local-authority-mash"),
                organization("example-zero-to-nineteen", "Example 0-19 Service", "zero-to-nineteen-service"),
                organization("ed", "Example Hospital Emergency Department", "emergency-department"),
                organization("mash", "Example Borough MASH", "local-authority-mash")):
        await put(client, org)
    for rid, code in (("hv-1", "health-visitor"), ("lead-1", "safeguarding-lead")):
        await put(client, {"resourceType": "PractitionerRole", "id": rid, "active": True,
                           "organization": {"reference": ZERO19},
                           "code": [{"coding": [{"system": CS + "care-team-role", "code": code}]}]})
    await put(client, example("Patient-example-child.json"))
    await put(client, example("Patient-example-mother.json"))
    await put(client, example("RelatedPerson-example-father.json"))
    await put(client, {"resourceType": "Patient", "id": "father", "identifier": [{"system": NHS, "value": "9990000034"}],
                       "name": [{"family": "Example", "given": ["Jo"]}], "gender": "male", "birthDate": "1990-05-06"})
    await put(client, {"resourceType": "CareTeam", "id": "ct-child", "status": "active", "subject": {"reference": CHILD},
                       "participant": [{"role": [{"coding": [{"system": CS + "care-team-role", "code": code}]}],
                                        "member": {"reference": ref}}
                                       for code, ref in (("health-visitor", "PractitionerRole/hv-1"),
                                                         ("safeguarding-lead", "PractitionerRole/lead-1"))]})


def kind(rtype: str, content: dict[str, Any]) -> str | None:
    """The label of a server-written kind, or None for a resource only clients write."""
    if rtype == "Communication":
        code = content["category"][0]["coding"][0]["code"]
        return None if code == "mash-referral" else f"Communication {code}"
    if rtype == "Task":
        escalated = (content.get("businessStatus") or {}).get("coding", [{}])[0].get("code") == "escalated"
        return "Task acknowledge escalated" if escalated else "Task acknowledge"
    if rtype == "DocumentReference" and content["status"] == "superseded":
        return "DocumentReference superseded"
    if rtype == "Binary" and "securityContext" in content:
        return "Binary linked to its copy"
    if rtype == "Subscription" and content["status"] == "active":
        return "Subscription active"
    return None


async def test_every_server_written_kind_meets_its_profile(client: httpx.AsyncClient, clean_ctx: AppContext,
                                                           auth: Auth, receiver: Receiver,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clean_ctx.settings, "webhook_allow", f"127.0.0.1:{receiver.port}")  # the receiver's port
    await world(client)
    await post(client, subscription(receiver.url, "ed-attendance", "id-only"))
    dispatcher = Dispatcher(clean_ctx, retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2))
    try:
        for _ in range(100):  # the dispatcher's handshake makes the Subscription active (a server write)
            await dispatcher.run_once()
            if receiver.of_type("handshake"):
                break
            await asyncio.sleep(0.02)
    finally:
        await dispatcher.http.aclose()
    await post(client, flag("child-protection-plan", CHILD))
    await post(client, encounter({"reference": CHILD}, reasonCode=[{"coding": [{"system": SNOMED, "code": "82271004"}]}]))
    await post(client, encounter({"type": "Patient", "identifier": {"system": NHS, "value": "9990000018"}},
                                 hospitalization={"dischargeDisposition": {"coding": [
                                     {"system": SNOMED, "code": "1066301000000103"}]}}))
    await post(client, encounter({"reference": "Patient/father"}))  # think-family, for the child
    assert await escalate_overdue(clean_ctx, datetime(2026, 2, 2, 12, tzinfo=UTC)) == 3
    ed_reader = auth("ed-clinician", org=ED, care_setting=ED_CARE_SETTING)
    r = await client.get("/fhir/Flag", params={"patient:identifier": f"{NHS}|9990000018", "status": "active"},
                         headers=ed_reader)
    assert r.status_code == 200, r.text
    hv = auth("health-visitor", org=ZERO19, practitioner="PractitionerRole/hv-1")
    r = await client.post("/fhir", json=referral_transaction(), headers=hv)
    assert r.status_code == 200, r.text
    old = r.json()["entry"][1]["response"]["location"].split("/fhir/")[1].rsplit("/_history", 1)[0]
    copy = (await client.get(f"/fhir/{old}")).json()
    correction = {k: v for k, v in copy.items() if k not in ("id", "meta")} | {
        "content": [{"attachment": {"contentType": "text/plain", "data": "Q29ycmVjdGVkIHJlZmVycmFsLgo="}}],
        "relatesTo": [{"code": "replaces", "target": {"reference": old}}]}
    await post(client, correction, **hv)

    async with clean_ctx.engine.connect() as conn:
        rows = (await conn.execute(select(resource_version.c.res_type, resource_version.c.content).where(
            resource_version.c.res_type != "AuditEvent", resource_version.c.content.is_not(None)))).all()
    issues: dict[str, list[str]] = {}
    kinds: dict[str, int] = {}
    for rtype, content in rows:
        content = orjson.loads(content) if isinstance(content, str | bytes) else content
        label = kind(rtype, content)
        if label is not None:
            kinds[label] = kinds.get(label, 0) + 1
        found = [i.to_fhir()["diagnostics"] for i in validate_resource(rtype, content)]
        if found:
            issues[f"{rtype}/{content['id']}/_history/{content['meta']['versionId']}"] = found
    assert issues == {}
    assert kinds == {
        "Communication ed-attendance": 1, "Communication did-not-wait": 1, "Communication think-family": 1,
        "Task acknowledge": 3, "Task acknowledge escalated": 3, "Communication escalation": 3,
        "Communication access-notification": 1, "Binary linked to its copy": 1,
        "DocumentReference superseded": 1, "Subscription active": 1,
    }


# -- the failure path, through a real server process -------------------------------------------------
def broken_profiles(tmp: Path) -> Path:
    """A copy of the bundled conformance folder whose safeguarding-task profile requires Task.note."""
    root = tmp / "profiles"
    shutil.copytree(PROFILES_DIR, root)
    path = root / "StructureDefinition" / "safeguarding-task.json"
    sd = orjson.loads(path.read_bytes())
    sd["differential"]["element"].append({"id": "Task.note", "path": "Task.note", "min": 1})
    path.write_bytes(orjson.dumps(sd))
    return root


async def test_invalid_server_write_is_a_500_and_rolls_back(database: str | None, tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_server, database, args=("--no-dispatcher",),
                                     extra_env={"SAFEFLAG_PROFILES_DIR": str(broken_profiles(tmp_path))})
    try:
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=30) as api:
            await world(api)
            r = await api.post("/fhir/Encounter", json=encounter({"reference": CHILD}),
                               headers={"X-Request-Id": "req-server-write-1"})
            assert r.status_code == 500, r.text
            assert r.headers["x-request-id"] == "req-server-write-1"
            assert r.json() == {"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "exception",
                "diagnostics": "SF-0501: Internal server error: a Task the server writes failed validation against "
                               f"{SD}safeguarding-task, so nothing was saved; quote request id req-server-write-1 "
                               "when reporting it"}]}
            for rtype in ("Encounter", "Communication", "Task"):  # the whole transaction rolled back
                assert (await api.get(f"/fhir/{rtype}", params={"_summary": "count"})).json()["total"] == 0, rtype
            # the failed attempt is audited (outcome 8, serious failure), in a transaction of its own
            events = (await api.get("/fhir/AuditEvent", params={"outcome": "8"})).json()
            assert [(e["resource"]["action"], e["resource"]["outcomeDesc"]) for e in events["entry"]] == [
                ("C", r.json()["issue"][0]["diagnostics"].removeprefix("SF-0501: "))]
            # a Task sent over the API is held to the same (broken) profile: a 422, not a 500
            r = await api.post("/fhir/Task", json={"resourceType": "Task", "status": "requested", "intent": "order",
                                              "code": {"coding": [{"system": TASK, "code": "acknowledge"}]},
                                              "focus": {"reference": "Communication/x"}, "for": {"reference": CHILD}})
            assert r.status_code == 422, r.text
        errors = [line for line in server.log_records() if line.get("level") == "ERROR"]
        assert [(e["logger"], e["msg"]) for e in errors][1:] == [("safeflag", "request")]  # the 500's access line
        line = errors[0]
        assert {k: line[k] for k in ("logger", "request_id", "profile", "issue", "expression")} == {
            "logger": "safeflag.server_writes", "request_id": "req-server-write-1", "profile": SD + "safeguarding-task",
            "issue": "SF-0601", "expression": "Task.note"}
        assert line["msg"].startswith("server-written Task/")
        assert line["msg"].endswith(f" fails profile {SD}safeguarding-task: SF-0601: Task.note: minimum required = "
                                    f"1, but only found 0 (profile {SD}safeguarding-task) (at Task.note)")
    finally:
        server.stop()
        server.cleanup()


async def test_an_escalation_that_fails_its_profile_does_not_stop_the_others(
    client: httpx.AsyncClient, clean_ctx: AppContext, tmp_path: Path
) -> None:
    """The escalation timer goes on past a Task whose escalation fails validation: that Task stays as
    it was (its transaction rolled back), the next is escalated. The profile folder in use is switched
    as SAFEFLAG_PROFILES_DIR would (to one requiring Communication.recipient, which an escalation with
    no safeguarding lead to address lacks), and back afterwards."""
    await world(client)
    alone = {"resourceType": "Patient", "id": "alone", "identifier": [{"system": NHS, "value": "9990000069"}],
             "birthDate": "2025-06-01"}  # no CareTeam, no lead: its escalation has no recipient
    await put(client, alone)
    first = await post(client, encounter({"reference": "Patient/alone"}))
    second = await post(client, encounter({"reference": CHILD}))
    tasks = {}
    for enc in (first, second):
        comm = (await client.get("/fhir/Communication", params={"encounter": f"Encounter/{enc['id']}"})).json()
        notices = [e["resource"] for e in comm["entry"] if e["search"]["mode"] == "match"]
        assert len(notices) == 1, [(n["category"], n.get("recipient")) for n in notices]
        notice = notices[0]
        found = (await client.get("/fhir/Task", params={"focus": f"Communication/{notice['id']}"})).json()
        (task,) = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "match"]
        tasks[enc["id"]] = task
    root = tmp_path / "profiles"
    shutil.copytree(PROFILES_DIR, root)
    path = root / "StructureDefinition" / "safeguarding-communication.json"
    sd = orjson.loads(path.read_bytes())
    sd["differential"]["element"].append({"id": "Communication.recipient", "path": "Communication.recipient",
                                          "min": 1})
    path.write_bytes(orjson.dumps(sd))
    use_profiles(root)
    try:
        assert await escalate_overdue(clean_ctx, datetime(2026, 2, 2, 12, tzinfo=UTC)) == 1
    finally:
        use_profiles(PROFILES_DIR)
    unescalated = (await client.get(f"/fhir/Task/{tasks[first['id']]['id']}")).json()
    assert unescalated == tasks[first["id"]]
    escalated = (await client.get(f"/fhir/Task/{tasks[second['id']]['id']}")).json()
    assert (escalated["meta"]["versionId"], escalated["businessStatus"]["coding"][0]["code"]) == ("2", "escalated")
    found = (await client.get("/fhir/Communication", params={"category": f"{CS}safeguarding-communication-category|escalation"})).json()
    assert [e["resource"]["about"][0]["reference"] for e in found["entry"] if e["search"]["mode"] == "match"] == [
        f"Task/{escalated['id']}"]
