"""No ED attendance is ever silent: a notice routed to no health visitor, school nurse or team, for each
reason code, through the API on both databases, at fixed instants of the injected clock.

The rules under test (docs/api/ed-attendance.md "Unrouted notices are never silent", app/safeguarding/unrouted.py):
- reasons: `patient-unknown` (no live Patient is the subject), `patient-ambiguous` (several live
  Patients hold its NHS number), `no-care-team` (the child is on file with no CareTeam member for its
  age and no managing organisation); each only when no 0-19 duty team is on file either: a notice
  that reaches the duty team or the managing organisation is routed;
- the ED's writer is told: header `X-SafeFlag-Unrouted: <reason>`, and a warning issue SF-0975
  (code `incomplete`) in the 201's OperationOutcome under `Prefer: return=OperationOutcome` and in a
  Bundle entry's `response.outcome`;
- once committed, a WARNING log line (request id, reason; no NHS number) and
  `safeflag_ed_unrouted_total{reason}`; nothing of either for a write that rolled back;
- the notice and Task go to the ED organisation's safeguarding lead, else nobody owns the Task and
  `Task?owner:missing=true&code=acknowledge` lists it; either way the governance report counts the
  notice in `ed-unrouted` and links to that list; priority keeps its usual rules.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from app.context import AppContext
from app.fhir.profiles import profile_issues
from app.notify.delivery import RetryPolicy
from app.notify.dispatcher import Dispatcher
from app.observability import JsonFormatter
from app.storage.tables import idx_token, resource
from tests.conftest import FHIR
from tests.notify.conftest import subscription
from tests.notify.ed_data import (
    NHS,
    TASK_CODES,
    by_nhs,
    by_ref,
    child,
    encounter,
    organization,
    practitioner,
    practitioner_role,
    put,
    related_person,
    search,
)
from tests.referrals.support import token
from tests.support.receiver import Receiver

REASONS = "https://fhir.safeflag.example/CodeSystem/unrouted-reason"
LIST = "/fhir/Task?owner:missing=true&code=acknowledge"
START = "2026-01-05T08:00:00Z"  # a Monday; the StepClock starts at 2026-01-05T09:00:00Z
NHS_A, NHS_B = "9990000018", "9990000026"


async def _world(client: httpx.AsyncClient, *, ed_lead: bool, duty: bool = False) -> None:
    """An ED, a 0-19 service with its own safeguarding lead, optionally the ED's safeguarding lead and
    the 0-19 duty team."""
    await put(client, "Organization", "ed", organization("City ED", "emergency-department"))
    await put(client, "Organization", "zero19", organization("North 0-19 service", "zero-to-nineteen-service"))
    await put(client, "Practitioner", "lead", practitioner("Lead"))
    await put(client, "PractitionerRole", "lead-1", practitioner_role("Practitioner/lead", "Organization/zero19",
                                                                      "safeguarding-lead"))
    if ed_lead:
        await put(client, "Practitioner", "edlead", practitioner("Edlead"))
        await put(client, "PractitionerRole", "ed-lead", practitioner_role("Practitioner/edlead", "Organization/ed",
                                                                           "safeguarding-lead"))
    if duty:
        await put(client, "Organization", "duty", organization("0-19 duty desk", "zero-to-nineteen-duty"))


def _ed(ctx: AppContext) -> dict[str, str]:
    return token(ctx, "ed-clinician", org="Organization/ed")


async def _metrics(client: httpx.AsyncClient) -> dict[str, float]:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    return {s.labels["reason"]: s.value for f in text_string_to_metric_families(r.text)
            for s in f.samples if s.name == "safeflag_ed_unrouted_total"}


def _warning(enc_id: str, comm: str, reason: str, why: str, where: str, subject: bool = True) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": "warning", "code": "incomplete",
        "diagnostics": f"SF-0975: Encounter/{enc_id}: the ed-attendance notice {comm} reached no health visitor, "
                       f"school nurse or team ({reason}: {why}, and no 0-19 duty team is on file); {where}",
    }
    if subject:
        issue["expression"] = ["Encounter.subject"]
    return issue


UNKNOWN = "no Patient on file is the attendance's subject (NHS number not known here)"
AMBIGUOUS = "several Patients on file hold the subject's NHS number"
NO_TEAM = "the child has no health visitor or school nurse in an active CareTeam and no managing organisation"
TO_LIST = f"it has no recipient and its Task no owner: see GET {FHIR}/Task?owner:missing=true&code=acknowledge"
TO_LEAD = "it went to the ED's safeguarding lead PractitionerRole/ed-lead"


async def _notice(client: httpx.AsyncClient, about: str) -> tuple[dict[str, Any], dict[str, Any]]:
    # (R4 has no `about` search parameter)
    [comm] = [c for c in await search(client, "Communication") if c["about"] == [{"reference": about}]]
    [task] = await search(client, "Task", focus=f"Communication/{comm['id']}")
    for written in (comm, task):  # what the server writes meets the published profiles
        assert [i.text for i in profile_issues(written["resourceType"], written)
                if i.severity in ("error", "fatal")] == []
    return comm, task


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, dict[str, Any]]]:
    """The test's `safeflag.unrouted` records, (level, the JSON line the server writes). pytest's caplog
    also listens on the non-propagating `safeflag` logger the app configures."""
    return [(r.levelno, json.loads(JsonFormatter().format(r))) for r in caplog.records if r.name == "safeflag.unrouted"]


async def _unrouted_in_report(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The ED's parts of the governance report from `ed-unrouted` on."""
    r = await client.get("/fhir/$governance-report", params={"month": "2026-01", "organization": "Organization/ed"})
    assert r.status_code == 200, r.text
    parts = r.json()["parameter"][0]["part"]
    names = [p["name"] for p in parts]
    return parts[names.index("ed-unrouted"):names.index("access-notifications")]


async def test_patient_unknown_no_lead_listed_as_ownerless(
    client: httpx.AsyncClient, clean_ctx: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    await _world(client, ed_lead=False)
    r = await client.post("/fhir/Encounter", json=encounter(by_nhs(NHS_A), "Organization/ed", start=START),
                          headers={**_ed(clean_ctx), "Prefer": "return=OperationOutcome",
                                   "X-Request-Id": "ed-req-1"})
    assert r.status_code == 201, r.text
    enc_id = r.headers["location"].split("/")[-3]
    comm, task = await _notice(client, f"Encounter/{enc_id}")
    assert r.headers["x-safeflag-unrouted"] == "patient-unknown"
    assert r.headers["x-request-id"] == "ed-req-1"
    assert r.json() == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "diagnostics": f"SF-0001: Encounter/{enc_id} created"},
        _warning(enc_id, f"Communication/{comm['id']}", "patient-unknown", UNKNOWN, TO_LIST),
    ]}
    # the notice: no recipient, the reason as a tag, the usual priority; its Task owner-less, listed
    assert "recipient" not in comm and "owner" not in task
    assert comm["meta"]["tag"] == [{"system": REASONS, "code": "patient-unknown"}]
    assert comm["subject"] == by_nhs(NHS_A) and comm["priority"] == "routine"
    assert comm["payload"][0]["contentString"] == f"ED attendance on {START} (routed via unrouted)"
    assert (task["status"], task["priority"]) == ("requested", "routine")
    listed = [t["id"] for t in await search(client, "Task", **{"owner:missing": "true", "code": "acknowledge"})]
    assert listed == [task["id"]]
    assert [t["id"] for t in await search(client, "Task", **{"owner:missing": "true",
                                                             "code": f"{TASK_CODES}|acknowledge"})] == [task["id"]]
    assert await search(client, "Task", **{"owner:missing": "false", "code": "acknowledge"}) == []
    # the log line: once, WARNING, request id and reason, no NHS number anywhere in it
    [(level, line)] = _lines(caplog)
    assert (level, line["msg"], line["request_id"], line["reason"]) == (
        logging.WARNING, "ED notice unrouted", "ed-req-1", "patient-unknown")
    assert (line["notice"], line["task"], line["delivered_to"]) == (
        f"Communication/{comm['id']}", f"Task/{task['id']}", "Task?owner:missing=true&code=acknowledge")
    assert NHS_A not in json.dumps(line)
    assert await _metrics(client) == {"patient-unknown": 1.0}
    assert await _unrouted_in_report(client) == [
        {"name": "ed-unrouted", "valueInteger": 1}, {"name": "ed-unrouted-list", "valueUri": FHIR + LIST[5:]}]


async def _legacy_duplicate(ctx: AppContext, patient_id: str, nhs: str) -> None:
    """Make Patient/<patient_id> found by the NHS number `nhs` too, as in a database holding duplicates
    from before NHS numbers were unique (no write through the server can make one)."""
    t = idx_token.c
    pk = select(resource.c.pk).where(resource.c.res_type == "Patient", resource.c.res_id == patient_id)
    async with ctx.engine.begin() as conn:
        done = await conn.execute(update(idx_token).where(t.resource_pk == pk.scalar_subquery(), t.param == "identifier",
                                                          t.system == NHS).values(code=nhs))
    assert done.rowcount == 1


async def test_patient_ambiguous_goes_to_the_ed_safeguarding_lead(
    client: httpx.AsyncClient, clean_ctx: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    await _world(client, ed_lead=True)
    await put(client, "Patient", "twin-1", child(NHS_A, "2024-03-01", "Organization/zero19"))
    await put(client, "Patient", "twin-2", child(NHS_B, "2024-03-01", "Organization/zero19", family="Other"))
    await _legacy_duplicate(clean_ctx, "twin-2", NHS_A)
    r = await client.post("/fhir/Encounter", json=encounter(by_nhs(NHS_A), "Organization/ed", start=START),
                          headers={**_ed(clean_ctx), "X-Request-Id": "ed-req-2"})
    assert r.status_code == 201, r.text
    assert r.json()["resourceType"] == "Encounter"  # the default answer is still the resource
    assert r.headers["x-safeflag-unrouted"] == "patient-ambiguous"
    comm, task = await _notice(client, f"Encounter/{r.json()['id']}")
    lead = {"reference": "PractitionerRole/ed-lead"}
    assert (comm["recipient"], task["owner"]) == ([lead], lead)
    assert comm["meta"]["tag"] == [{"system": REASONS, "code": "patient-ambiguous"}]
    assert comm["payload"][0]["contentString"] == f"ED attendance on {START} (routed via ed-safeguarding-lead)"
    assert await search(client, "Task", **{"owner:missing": "true", "code": "acknowledge"}) == []
    [(level, line)] = _lines(caplog)
    assert (level, line["request_id"], line["reason"], line["delivered_to"]) == (
        logging.WARNING, "ed-req-2", "patient-ambiguous", "PractitionerRole/ed-lead")
    assert NHS_A not in json.dumps(line)
    assert await _metrics(client) == {"patient-ambiguous": 1.0}
    # delivered to a person, still counted as routed to no one, and the figure links to the list
    assert await _unrouted_in_report(client) == [
        {"name": "ed-unrouted", "valueInteger": 1}, {"name": "ed-unrouted-list", "valueUri": FHIR + LIST[5:]}]
    # the warning under Prefer: return=OperationOutcome names the lead
    r = await client.post("/fhir/Encounter", json=encounter(by_nhs(NHS_A), "Organization/ed", start=START),
                          headers={**_ed(clean_ctx), "Prefer": "return=OperationOutcome"})
    enc_id = r.headers["location"].split("/")[-3]
    comm, _ = await _notice(client, f"Encounter/{enc_id}")
    assert r.json()["issue"][1] == _warning(enc_id, f"Communication/{comm['id']}", "patient-ambiguous", AMBIGUOUS,
                                            TO_LEAD)
    assert await _metrics(client) == {"patient-ambiguous": 2.0}


async def test_no_care_team_in_a_transaction_and_think_family(
    client: httpx.AsyncClient, clean_ctx: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    """A child on file with no CareTeam member and no managing organisation: in a transaction the entry's
    `response.outcome` carries the warning (any return mode) and the Bundle's answer the header; an
    adult's attendance whose dependent child is so is unrouted the same way (think-family)."""
    await _world(client, ed_lead=False)
    await put(client, "Patient", "c1", child(NHS_A, "2023-06-01"))
    await put(client, "Patient", "mum", child(NHS_B, "1990-02-02", family="Parent"))
    await put(client, "RelatedPerson", "mum-rp", related_person("Patient/c1", nhs=NHS_B, parental=True))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:e1", "resource": encounter(by_ref("c1"), "Organization/ed", start=START),
         "request": {"method": "POST", "url": "Encounter"}},
    ]}
    r = await client.post("/fhir", json=bundle, headers={**_ed(clean_ctx), "X-Request-Id": "ed-req-3"})
    assert r.status_code == 200, r.text
    assert r.headers["x-safeflag-unrouted"] == "no-care-team"
    [entry] = r.json()["entry"]
    enc_id = entry["response"]["location"].split("/")[-3]
    comm, task = await _notice(client, f"Encounter/{enc_id}")
    assert entry["response"]["outcome"] == {"resourceType": "OperationOutcome", "issue": [
        _warning(enc_id, f"Communication/{comm['id']}", "no-care-team", NO_TEAM, TO_LIST, subject=False)]}
    assert (comm["subject"], comm["meta"]["tag"]) == (by_ref("c1"), [{"system": REASONS, "code": "no-care-team"}])
    # the adult attends: one think-family notice, its child unrouted alike
    r = await client.post("/fhir/Encounter", json=encounter(by_ref("mum"), "Organization/ed", start=START),
                          headers=_ed(clean_ctx))
    assert (r.status_code, r.headers["x-safeflag-unrouted"]) == (201, "no-care-team")
    family, family_task = await _notice(client, f"Encounter/{r.json()['id']}")
    assert (family["category"][0]["coding"][0]["code"], family["subject"]) == ("think-family", by_ref("c1"))
    assert "recipient" not in family and "owner" not in family_task
    listed = {t["id"] for t in await search(client, "Task", **{"owner:missing": "true", "code": "acknowledge"})}
    assert listed == {task["id"], family_task["id"]}
    lines = [line for _, line in _lines(caplog)]
    assert [line["reason"] for line in lines] == ["no-care-team", "no-care-team"]
    assert lines[0]["request_id"] == "ed-req-3" and NHS_A not in json.dumps(lines)
    assert await _metrics(client) == {"no-care-team": 2.0}
    assert (await _unrouted_in_report(client))[0] == {"name": "ed-unrouted", "valueInteger": 2}


async def test_routed_to_a_team_is_not_unrouted(
    client: httpx.AsyncClient, clean_ctx: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown NHS number with a duty team on file, or a child with a managing organisation: routed
    (to a team), so no header, no warning, no log line, no count; the report's figure is 0, unlinked."""
    await _world(client, ed_lead=True, duty=True)
    await put(client, "Patient", "c1", child(NHS_B, "2023-06-01", "Organization/zero19"))
    for subject, recipient in ((by_nhs(NHS_A), "Organization/duty"), (by_ref("c1"), "Organization/zero19")):
        r = await client.post("/fhir/Encounter", json=encounter(subject, "Organization/ed", start=START),
                              headers={**_ed(clean_ctx), "Prefer": "return=OperationOutcome"})
        assert r.status_code == 201, r.text
        assert "x-safeflag-unrouted" not in r.headers
        enc_id = r.headers["location"].split("/")[-3]
        assert r.json()["issue"] == [{"severity": "information", "code": "informational",
                                      "diagnostics": f"SF-0001: Encounter/{enc_id} created"}]
        comm, _ = await _notice(client, f"Encounter/{enc_id}")
        assert (comm["recipient"], "tag" in comm["meta"]) == ([{"reference": recipient}], False)
    assert _lines(caplog) == []
    assert await _metrics(client) == {}
    assert await _unrouted_in_report(client) == [{"name": "ed-unrouted", "valueInteger": 0}]


async def test_a_rolled_back_attendance_is_neither_logged_nor_counted(
    client: httpx.AsyncClient, clean_ctx: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    await _world(client, ed_lead=False)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": encounter(by_nhs(NHS_A), "Organization/ed", start=START),
         "request": {"method": "POST", "url": "Encounter"}},
        # runs after the create (updates follow creates) and fails: the whole transaction rolls back
        {"resource": {**child(NHS_B, "2023-06-01"), "id": "c9"},
         "request": {"method": "PUT", "url": "Patient/c9", "ifMatch": 'W/"5"'}},
    ]}
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 412, r.text
    assert "x-safeflag-unrouted" not in r.headers
    assert await search(client, "Communication") == []
    assert _lines(caplog) == []
    assert await _metrics(client) == {}


async def test_the_ed_leads_subscription_gets_the_notice(
    client: httpx.AsyncClient, clean_ctx: AppContext, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rest-hook subscriber of the ED's safeguarding lead (`ed-attendance`, recipient filter) gets the
    rerouted notice at a real receiver (whose port the allow-list names)."""
    monkeypatch.setattr(clean_ctx.settings, "webhook_allow", f"127.0.0.1:{receiver.port}")
    await _world(client, ed_lead=True)
    r = await client.post("/fhir/Subscription", json=subscription(
        receiver.url, filters=("Communication?recipient=PractitionerRole/ed-lead",), content="full-resource"))
    assert r.status_code == 201, r.text
    dispatcher = Dispatcher(clean_ctx, retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2))
    try:
        await dispatcher.run_once()
        await receiver.wait_for(lambda: len(receiver.of_type("handshake")) == 1)
        r = await client.post("/fhir/Encounter", json=encounter(by_nhs(NHS_A), "Organization/ed", start=START),
                              headers=_ed(clean_ctx))
        assert (r.status_code, r.headers["x-safeflag-unrouted"]) == (201, "patient-unknown")
        await dispatcher.run_once()
        await receiver.wait_for(lambda: receiver.events() == [1])
    finally:
        await dispatcher.http.aclose()
    comm, _ = await _notice(client, f"Encounter/{r.json()['id']}")
    got = receiver.of_type("event-notification")[0].json
    assert got["entry"][1]["resource"] == comm
    assert comm["recipient"] == [{"reference": "PractitionerRole/ed-lead"}]
    assert comm["subject"] == {"identifier": {"system": NHS, "value": NHS_A}, "type": "Patient"}
