"""The ED attendance flow through the API on both databases (contract section 5, "ED attendance"):
notice + acknowledgement Task, routing, priority, did-not-wait, think-family, idempotency,
acknowledgement, escalation, and delivery to an `ed-attendance` subscriber at a real receiver."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from app.context import AppContext
from app.fhir.profiles import profile_issues
from app.notify.dispatcher import Dispatcher
from app.safeguarding.escalation import escalate_overdue
from app.safeguarding.tasks import due_time
from tests.conftest import FHIR
from tests.notify.conftest import subscription
from tests.notify.ed_data import (
    CLOCK,
    COMM_CATEGORY,
    DNW,
    INJURY,
    NOTICE_ID,
    TASK_CODES,
    born,
    borough,
    by_nhs,
    by_ref,
    care_team,
    category,
    child,
    encounter,
    flag,
    notices,
    organization,
    post,
    put,
    related_person,
    search,
)
from tests.support.receiver import Receiver

ACK = f"{TASK_CODES}|acknowledge"


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)  # Python 3.11 reads "Z" and "+00:00" alike


def _no_profile_errors(resource: dict[str, Any]) -> None:
    """What the service writes meets the published profiles (fhir_profiles/README.md)."""
    errors = [i for i in profile_issues(resource["resourceType"], resource) if i.severity in ("error", "fatal")]
    assert errors == [], [i.text for i in errors]


async def _attend(api: httpx.AsyncClient, subject: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], datetime,
                                                                                     datetime]:
    before = CLOCK.now() - timedelta(milliseconds=1)
    enc = await post(api, encounter(subject, "Organization/ed", **kw))
    return enc, before, CLOCK.now() + timedelta(milliseconds=1)


async def _notice_and_task(api: httpx.AsyncClient, enc_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = await notices(api, encounter=f"Encounter/{enc_id}")
    assert len(found) == 1, found
    tasks = await search(api, "Task", focus=f"Communication/{found[0]['id']}")
    assert len(tasks) == 1, tasks
    return found[0], tasks[0]


def _strip(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


async def test_child_under_5_notice_and_task_exactly(api: httpx.AsyncClient) -> None:
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(2)))
    await put(api, "CareTeam", "ct1", care_team("Patient/c1", ("health-visitor", "PractitionerRole/hv-1"),
                                                ("safeguarding-lead", "PractitionerRole/lead-1")))
    enc, before, after = await _attend(api, by_ref("c1"))
    comm, task = await _notice_and_task(api, enc["id"])
    sent = _instant(comm["sent"])
    assert before <= sent <= after
    assert _strip(comm) == {
        "resourceType": "Communication",
        "identifier": [{"system": NOTICE_ID, "value": f"Encounter/{enc['id']}|ed-attendance|c1"}],
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": "ed-attendance"}]}],
        "priority": "routine",
        "about": [{"reference": f"Encounter/{enc['id']}"}],
        "sent": comm["sent"],
        "subject": {"reference": "Patient/c1"},
        "encounter": {"reference": f"Encounter/{enc['id']}"},
        "recipient": [{"reference": "PractitionerRole/hv-1"}],
        "sender": {"reference": "Organization/ed"},
        "payload": [{"contentString": f"ED attendance on {enc['period']['start']} (routed via care-team)"}],
    }
    assert sent.date() == date(2026, 3, 4)  # CLOCK's Wednesday: 5 working days later is next Wednesday
    due = sent.replace(tzinfo=None) + timedelta(days=7)
    assert _strip(task) == {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": {"coding": [{"system": TASK_CODES, "code": "acknowledge", "display": "Acknowledge notice"}]},
        "focus": {"reference": f"Communication/{comm['id']}"},
        "authoredOn": comm["sent"],
        "restriction": {"period": {"end": due.strftime("%Y-%m-%dT%H:%M:%S.")
                                   + f"{due.microsecond // 1000:03d}+00:00"}},
        "for": {"reference": "Patient/c1"},
        "owner": {"reference": "PractitionerRole/hv-1"},
        "requester": {"reference": "Organization/ed"},
    }
    _no_profile_errors(comm)
    _no_profile_errors(task)
    # the health visitor's open work list (contract section 5: counts per owner)
    open_tasks = (await api.get("/fhir/Task", params={"owner": "PractitionerRole/hv-1", "status": "requested",
                                                      "_summary": "count"})).json()
    assert open_tasks["total"] == 1


async def test_subject_by_nhs_number_only(api: httpx.AsyncClient) -> None:
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(3)))
    await put(api, "CareTeam", "ct1", care_team("Patient/c1", ("health-visitor", "PractitionerRole/hv-1")))
    enc, _, _ = await _attend(api, by_nhs("9990000018"))
    comm, task = await _notice_and_task(api, enc["id"])
    assert comm["subject"] == {"reference": "Patient/c1"}  # resolved from the NHS number
    assert comm["recipient"] == [{"reference": "PractitionerRole/hv-1"}]
    assert task["for"] == {"reference": "Patient/c1"} and task["owner"] == {"reference": "PractitionerRole/hv-1"}
    assert comm["identifier"][0]["value"] == f"Encounter/{enc['id']}|ed-attendance|c1"

    # a child the service has never seen: the notice keeps the identifier and goes to the duty team
    unknown, _, _ = await _attend(api, by_nhs("9990000026"))
    comm2, task2 = await _notice_and_task(api, unknown["id"])
    assert comm2["subject"] == by_nhs("9990000026")
    assert comm2["recipient"] == [{"reference": "Organization/duty"}]
    assert comm2["identifier"][0]["value"] == f"Encounter/{unknown['id']}|ed-attendance|9990000026"
    assert task2["for"] == by_nhs("9990000026") and task2["owner"] == {"reference": "Organization/duty"}
    _no_profile_errors(comm2)
    _no_profile_errors(task2)
    # the EPR that only knows the NHS number finds both children's notices
    by_identifier = await notices(api, **{"patient:identifier": "https://fhir.nhs.uk/Id/nhs-number|9990000026"})
    assert [c["id"] for c in by_identifier] == [comm2["id"]]


async def test_routing(api: httpx.AsyncClient) -> None:
    await borough(api)
    cases = {
        # id: (patient, care team members, expected recipient, expected route)
        "hv": (child("9990000018", born(4, 300)), [("health-visitor", "PractitionerRole/hv-1"),
                                                   ("school-nurse", "Practitioner/sn")],
               {"reference": "PractitionerRole/hv-1"}, "care-team"),
        "sn5": (child("9990000026", born(5)), [("health-visitor", "PractitionerRole/hv-1"),
                                              ("school-nurse", "Practitioner/sn")],
                {"reference": "Practitioner/sn"}, "care-team"),
        "sn17": (child("9990000034", born(17, 300)), [("school-nurse", "Practitioner/sn")],
                 {"reference": "Practitioner/sn"}, "care-team"),
        # a health visitor only, but the child is 6: nobody of the right role -> managingOrganization
        "mo": (child("9990000042", born(6), managing="Organization/gp"), [("health-visitor", "PractitionerRole/hv-1")],
               {"reference": "Organization/gp"}, "managing-organization"),
        "duty": (child("9990000050", born(1)), [], {"reference": "Organization/duty"}, "duty-team"),
        # 18: an adult; without dependent children nobody is told
        "adult": (child("9990000069", born(18)), [("school-nurse", "Practitioner/sn")], None, None),
    }
    for pid, (patient, members, _, _) in cases.items():
        await put(api, "Patient", pid, patient)
        if members:
            await put(api, "CareTeam", f"ct-{pid}", care_team(f"Patient/{pid}", *members))
    # an ended CareTeam and an ended membership are ignored
    await put(api, "CareTeam", "ct-old", {**care_team("Patient/duty", ("health-visitor", "PractitionerRole/hv-1")),
                                          "status": "inactive"})
    ended = care_team("Patient/duty", ("health-visitor", "PractitionerRole/hv-1"))
    ended["participant"][0]["period"] = {"start": "2020-01-01", "end": "2021-01-01"}
    await put(api, "CareTeam", "ct-ended", ended)
    for pid, (_, _, recipient, via) in cases.items():
        enc, _, _ = await _attend(api, by_ref(pid))
        found = await notices(api, encounter=f"Encounter/{enc['id']}")
        if recipient is None:
            assert found == [], pid
            continue
        assert len(found) == 1, pid
        assert found[0]["recipient"] == [recipient], pid
        assert found[0]["payload"][0]["contentString"].endswith(f"(routed via {via})"), pid
        tasks = await search(api, "Task", focus=f"Communication/{found[0]['id']}")
        assert tasks[0]["owner"] == recipient, pid


async def test_unrouted_notice_is_stored_with_an_ownerless_task(api: httpx.AsyncClient) -> None:
    await borough(api, duty=False)
    await put(api, "Patient", "c1", child("9990000018", born(8)))
    enc, _, _ = await _attend(api, by_ref("c1"))
    comm, task = await _notice_and_task(api, enc["id"])
    assert "recipient" not in comm
    assert comm["payload"][0]["contentString"].endswith("(routed via unrouted)")
    assert "owner" not in task and task["status"] == "requested"
    _no_profile_errors(comm)
    _no_profile_errors(task)


async def test_priority(api: httpx.AsyncClient) -> None:
    await borough(api)
    la = "Organization/la"
    await put(api, "Organization", "la", organization("Borough children's services", "local-authority-mash"))
    patients = {
        "cp": born(3), "lac": born(9), "unborn": born(16), "ended": born(3),
        "inj0": born(0, 200), "inj1": born(1), "baby": born(0, 100), "plain": born(10),
    }
    nhs = iter(["9990000018", "9990000026", "9990000034", "9990000042", "9990000050", "9990000069",
                "9990000077", "9990000085"])
    for pid, birth in patients.items():
        await put(api, "Patient", pid, {**child(next(nhs), birth), "gender": "female"})
    await post(api, flag("Patient/cp", "child-protection-plan", la))
    await post(api, flag("Patient/lac", "looked-after-child", la))
    await post(api, flag("Patient/unborn", "unborn-child-protection-plan", la))  # a pregnant 16-year-old
    ended = await post(api, flag("Patient/ended", "child-protection-plan", la))
    reason = {"url": "https://fhir.safeflag.example/StructureDefinition/status-reason", "valueCodeableConcept": {
        "coding": [{"system": "https://fhir.safeflag.example/CodeSystem/status-reason", "code": "plan-ended"}]}}
    resp = await api.put(f"/fhir/Flag/{ended['id']}", json={**ended, "status": "inactive", "extension": [reason]})
    assert resp.status_code == 200, resp.text
    expected = {
        "cp": ("urgent", {}), "lac": ("urgent", {}), "unborn": ("urgent", {}), "ended": ("routine", {}),
        "inj0": ("urgent", {"reasons": (INJURY[0],)}), "inj1": ("routine", {"reasons": INJURY}),
        "baby": ("routine", {}), "plain": ("urgent", {"disposition": DNW[2]}),
    }
    for pid, (prio, kw) in expected.items():
        enc, _, _ = await _attend(api, by_ref(pid), **kw)
        comm, task = await _notice_and_task(api, enc["id"])
        assert (pid, comm["priority"], task["priority"]) == (pid, prio, prio)
        sent = _instant(comm["sent"]).replace(tzinfo=None)
        assert _instant(task["restriction"]["period"]["end"]).replace(tzinfo=None) == due_time(sent, prio)
    for code in INJURY[1:]:  # each injury code counts
        enc, _, _ = await _attend(api, by_ref("inj0"), reasons=(code,))
        assert (await _notice_and_task(api, enc["id"]))[0]["priority"] == "urgent"


async def test_did_not_wait(api: httpx.AsyncClient) -> None:
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(7)))
    await put(api, "CareTeam", "ct1", care_team("Patient/c1", ("school-nurse", "Practitioner/sn")))
    for code in DNW:
        enc, _, _ = await _attend(api, by_ref("c1"), disposition=code)
        comm, task = await _notice_and_task(api, enc["id"])
        assert (category(comm), comm["priority"], task["priority"]) == ("did-not-wait", "urgent", "urgent")
        assert comm["payload"][0]["contentString"].startswith("Left ED before care was complete")
        _no_profile_errors(comm)
    # another discharge code is an ordinary attendance
    other, _, _ = await _attend(api, by_ref("c1"), disposition="306689006")
    assert category((await _notice_and_task(api, other["id"]))[0]) == "ed-attendance"
    # in progress, then finished as "left before care was complete": the attendance notice, then a
    # did-not-wait notice, each once
    enc, _, _ = await _attend(api, by_ref("c1"), status="in-progress")
    left = {**enc, "status": "finished", "hospitalization": {"dischargeDisposition": {
        "coding": [{"system": "http://snomed.info/sct", "code": DNW[0]}]}}}
    for _ in range(2):
        assert (await api.put(f"/fhir/Encounter/{enc['id']}", json=left)).status_code == 200
    found = await notices(api, encounter=f"Encounter/{enc['id']}")
    assert [category(c) for c in found] == ["ed-attendance", "did-not-wait"]
    assert [c["priority"] for c in found] == ["routine", "urgent"]
    assert len(await search(api, "Task", code=ACK, **{"for": "Patient/c1"}, _count="50")) == 6


async def test_not_notified(api: httpx.AsyncClient) -> None:
    """Other classes, and attendances recorded in error or cancelled, notify nobody."""
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(7)))
    amb = encounter(by_ref("c1"), "Organization/ed")
    amb["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    await post(api, amb)
    await _attend(api, by_ref("c1"), status="entered-in-error")
    await _attend(api, by_ref("c1"), status="cancelled")
    assert await notices(api) == []
    assert await search(api, "Task") == []


async def test_think_family(api: httpx.AsyncClient) -> None:
    await borough(api)
    await put(api, "Patient", "mum", {**child("9990000107", born(34), family="Parent"),
                                       "link": [{"other": {"reference": "RelatedPerson/rp-link"}, "type": "seealso"}]})
    await put(api, "Patient", "k1", child("9990000018", born(2)))
    await put(api, "Patient", "k2", child("9990000026", born(9)))
    await put(api, "Patient", "k3", child("9990000034", born(12)))
    await put(api, "CareTeam", "ct1", care_team("Patient/k1", ("health-visitor", "PractitionerRole/hv-1")))
    await put(api, "CareTeam", "ct2", care_team("Patient/k2", ("school-nurse", "Practitioner/sn")))
    # k1 by the adult's NHS number (parental responsibility), k2 through Patient.link (household member),
    # k3's RelatedPerson has neither flag: not a dependant
    await put(api, "RelatedPerson", "rp-nhs", related_person("Patient/k1", nhs="9990000107", parental=True))
    await put(api, "RelatedPerson", "rp-link", related_person("Patient/k2", household=True))
    await put(api, "RelatedPerson", "rp-other", related_person("Patient/k3", nhs="9990000107"))
    enc, _, _ = await _attend(api, by_ref("mum"), reasons=("125667009",))
    found = sorted((c for c in await notices(api) if category(c) == "think-family"), key=lambda c: c["subject"]["reference"])
    assert [(c["subject"], c["recipient"]) for c in found] == [
        ({"reference": "Patient/k1"}, [{"reference": "PractitionerRole/hv-1"}]),
        ({"reference": "Patient/k2"}, [{"reference": "Practitioner/sn"}]),
    ]
    for comm in found:
        assert comm["about"] == [{"reference": f"Encounter/{enc['id']}"}]
        assert "encounter" not in comm and "reasonCode" not in comm  # the attendance (and its reason) is the adult's
        assert comm["status"] == "completed" and comm["sent"]
        assert comm["identifier"][0]["value"] == f"Encounter/{enc['id']}|think-family|{comm['subject']['reference'][8:]}"
        _no_profile_errors(comm)
        tasks = await search(api, "Task", focus=f"Communication/{comm['id']}")
        assert [(t["for"], t["owner"]) for t in tasks] == [(comm["subject"], comm["recipient"][0])]
    assert len(await notices(api)) == 2  # nothing for the adult herself
    # the same adult known to the ED only by NHS number
    enc2, _, _ = await _attend(api, by_nhs("9990000107"))
    assert len([c for c in await notices(api) if c["about"][0]["reference"] == f"Encounter/{enc2['id']}"]) == 2


async def test_idempotent(api: httpx.AsyncClient) -> None:
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(2)))
    # HAPI-style update-as-create with a client id
    body = {**encounter(by_ref("c1"), "Organization/ed", status="in-progress"), "id": "ed-42"}
    first = await api.put("/fhir/Encounter/ed-42", json=body)
    assert first.status_code == 201 and first.json()["meta"]["versionId"] == "1"
    same = await api.put("/fhir/Encounter/ed-42", json=body)  # identical content: no new version
    assert same.status_code == 200 and same.json()["meta"]["versionId"] == "1"
    newer = await api.put("/fhir/Encounter/ed-42", json={**body, "status": "finished"})
    assert newer.json()["meta"]["versionId"] == "2"
    patched = await api.patch("/fhir/Encounter/ed-42", json=[{"op": "add", "path": "/period/end",
                                                               "value": body["period"]["start"]}],
                              headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200 and patched.json()["meta"]["versionId"] == "3"
    # deleted and written again under the same id: still the same attendance
    assert (await api.delete("/fhir/Encounter/ed-42")).status_code == 204
    again = await api.put("/fhir/Encounter/ed-42", json=body)
    assert again.status_code == 201 and again.json()["meta"]["versionId"] == "5"
    found = await notices(api, encounter="Encounter/ed-42")
    assert [c["identifier"][0]["value"] for c in found] == ["Encounter/ed-42|ed-attendance|c1"]
    assert len(await search(api, "Task")) == 1


async def test_acknowledge_by_patch_or_put(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(2)))
    await put(api, "CareTeam", "ct1", care_team("Patient/c1", ("health-visitor", "PractitionerRole/hv-1")))
    _, t1 = await _notice_and_task(api, (await _attend(api, by_ref("c1")))[0]["id"])
    _, t2 = await _notice_and_task(api, (await _attend(api, by_ref("c1")))[0]["id"])
    count = {"owner": "PractitionerRole/hv-1", "status": "requested", "_summary": "count"}
    assert (await api.get("/fhir/Task", params=count)).json()["total"] == 2
    acked = await api.patch(f"/fhir/Task/{t1['id']}", json=[{"op": "replace", "path": "/status", "value": "completed"}],
                            headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "completed" and acked.json()["meta"]["versionId"] == "2"
    put_ack = await api.put(f"/fhir/Task/{t2['id']}", json={**t2, "status": "completed"})
    assert put_ack.status_code == 200 and put_ack.json()["status"] == "completed"
    assert (await api.get("/fhir/Task", params=count)).json()["total"] == 0
    # acknowledged Tasks never escalate
    assert await escalate_overdue(notify_ctx, CLOCK.now() + timedelta(days=30)) == 0


async def test_escalation_once_to_the_safeguarding_lead(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(2)))
    await put(api, "Patient", "c2", child("9990000026", born(3)))
    await put(api, "CareTeam", "ct1", care_team("Patient/c1", ("health-visitor", "PractitionerRole/hv-1"),
                                                ("safeguarding-lead", "Practitioner/lead")))
    await put(api, "CareTeam", "ct2", care_team("Patient/c2", ("health-visitor", "PractitionerRole/hv-1")))
    comm1, task1 = await _notice_and_task(api, (await _attend(api, by_ref("c1")))[0]["id"])
    _, task2 = await _notice_and_task(api, (await _attend(api, by_ref("c2")))[0]["id"])
    now = CLOCK.now()
    assert await escalate_overdue(notify_ctx, now) == 0  # nothing is due yet
    later = _instant(task1["restriction"]["period"]["end"]) + timedelta(minutes=1)
    # two dispatchers' timers at once still escalate each Task once
    assert sum(await asyncio.gather(escalate_overdue(notify_ctx, later), escalate_overdue(notify_ctx, later))) == 2
    assert await escalate_overdue(notify_ctx, later + timedelta(days=10)) == 0  # once only
    escalations = await notices(api, category=f"{COMM_CATEGORY}|escalation")
    by_task = {e["about"][0]["reference"]: e for e in escalations}
    assert len(escalations) == 2
    first = by_task[f"Task/{task1['id']}"]
    assert _strip(first) == {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": "escalation"}]}],
        "priority": "urgent",
        "about": [{"reference": f"Task/{task1['id']}"}, {"reference": f"Communication/{comm1['id']}"}],
        "sent": first["sent"],
        "payload": [{"contentString": f"Acknowledgement overdue since {task1['restriction']['period']['end']}"}],
        "subject": {"reference": "Patient/c1"},
        "recipient": [{"reference": "Practitioner/lead"}],  # the child's CareTeam lead, as referenced there
    }
    _no_profile_errors(first)
    # c2's CareTeam names no lead: the safeguarding lead of the owner's team (PractitionerRole lead-1)
    assert by_task[f"Task/{task2['id']}"]["recipient"] == [{"reference": "PractitionerRole/lead-1"}]
    reassigned = (await api.get(f"/fhir/Task/{task1['id']}")).json()
    assert reassigned["owner"] == {"reference": "Practitioner/lead"}
    assert reassigned["status"] == "requested" and reassigned["meta"]["versionId"] == "2"
    assert reassigned["businessStatus"]["coding"][0]["code"] == "escalated"
    assert reassigned["note"][0]["text"] == "Escalated to the safeguarding lead: acknowledgement overdue"
    # the lead acknowledges
    done = await api.patch(f"/fhir/Task/{task1['id']}", json={"status": "completed"},
                           headers={"Content-Type": "application/merge-patch+json"})
    assert done.status_code == 200 and done.json()["status"] == "completed"


async def test_notice_reaches_the_subscribed_health_visitor(api: httpx.AsyncClient, dispatcher: Dispatcher,
                                                             receiver: Receiver) -> None:
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(2)))
    await put(api, "Patient", "c2", child("9990000026", born(8)))
    await put(api, "CareTeam", "ct1", care_team("Patient/c1", ("health-visitor", "PractitionerRole/hv-1")))
    await put(api, "CareTeam", "ct2", care_team("Patient/c2", ("school-nurse", "Practitioner/sn")))
    resp = await api.post("/fhir/Subscription", json=subscription(
        receiver.url, filters=("Communication?recipient=PractitionerRole/hv-1",), content="full-resource"))
    assert resp.status_code == 201, resp.text
    await dispatcher.run_once()
    await receiver.wait_for(lambda: len(receiver.of_type("handshake")) == 1)
    enc, _, _ = await _attend(api, by_ref("c1"))
    await _attend(api, by_ref("c2"))  # the school nurse's: not for this subscriber
    await dispatcher.run_once()
    await receiver.wait_for(lambda: receiver.events() == [1])
    comm, _ = await _notice_and_task(api, enc["id"])
    got = receiver.of_type("event-notification")[0].json
    params = {p["name"]: p for p in got["entry"][0]["resource"]["parameter"]}
    parts = [(p["name"], p.get("valueString") or p.get("valueReference"))
             for p in params["notification-event"]["part"] if p["name"] != "timestamp"]
    assert parts == [
        ("event-number", "1"),
        ("focus", {"reference": f"{FHIR}/Communication/{comm['id']}"}),
        ("additional-context", {"reference": f"{FHIR}/Patient/c1"}),
        ("additional-context", {"reference": f"{FHIR}/Encounter/{enc['id']}"}),
    ]
    assert got["entry"][1]["resource"] == comm
    await dispatcher.run_once()
    assert receiver.events() == [1]
