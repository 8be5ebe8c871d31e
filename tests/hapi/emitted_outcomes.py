"""The second half of the scenarios of tests/hapi/emitted.py: searchset, history, batch Bundles and the
CapabilityStatement, an OperationOutcome for every error status, the notification Bundles the receiver got
(and `$status` / `$events`), and one AuditEvent of each interaction kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.hapi.conformance import profile_of
from tests.hapi.emitted_data import CHILD, ED, LA, MOTHER, NHS, TOPIC, ZERO19, example, flag

if TYPE_CHECKING:
    from tests.hapi.emitted import Scenario


async def bundles_and_outcomes(s: Scenario) -> None:
    o = s.out
    flag_id = o.resources["Flag (ended, status-reason)"]["id"]
    o.add("Bundle (history, instance)", await s.search(f"/fhir/Flag/{flag_id}/_history"))
    o.add("Bundle (history, type, paged)", await s.search("/fhir/Flag/_history?_count=2"))
    o.add(
        "Bundle (searchset, paged, _revinclude)",
        await s.search(f"/fhir/Patient?identifier={NHS}|9990000018&_revinclude=Flag:subject&_count=3"),
    )
    # a restricted flag withheld from a reader of another organisation: the outcome entry (contract 3)
    await s.post(
        flag(
            "risk-to-self",
            MOTHER,
            ZERO19,
            meta={
                "security": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
                ]
            },
        ),
        headers=s.token("health-visitor", org=ZERO19, fhir_user="PractitionerRole/hv-1"),
    )
    nurse = s.token("school-nurse", org=LA)
    o.add(
        "Bundle (searchset with a withheld-records outcome)",
        await s.search(f"/fhir/Flag?subject={MOTHER}", headers=nurse | {"X-Access-Context": "scheduled"}),
    )
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Flag/{flag_id}"}},
            {"request": {"method": "GET", "url": "Flag/no-such-flag"}},
        ],
    }
    o.add("Bundle (batch-response)", await s.call("POST", "/fhir", 200, batch))
    o.add("CapabilityStatement", await s.call("GET", "/fhir/metadata", 200))
    valid = await s.call(
        "POST", "/fhir/Flag/$validate", 200, example("Flag-example-child-protection-plan.json")
    )
    o.add("OperationOutcome ($validate)", valid)
    o.add(
        "OperationOutcome (400 bad JSON)",
        await s.call("POST", "/fhir/Patient", 400, b'{"resourceType": '),
    )
    o.add(
        "OperationOutcome (400 base rule)",
        await s.call("POST", "/fhir/Flag", 400, flag("child-protection-plan", CHILD) | {"status": "bogus"}),
    )
    o.add("OperationOutcome (401)", await s.call("GET", "/fhir/Flag", 401, headers={"Authorization": ""}))
    o.add(
        "OperationOutcome (403)",
        await s.call("GET", "/fhir/AuditEvent", 403, headers=s.token("ed-clinician", org=ED)),
    )
    o.add("OperationOutcome (404)", await s.call("GET", "/fhir/Flag/no-such-flag", 404))
    o.add("OperationOutcome (405)", await s.call("DELETE", f"/fhir/Flag/{flag_id}", 405))
    o.add(
        "OperationOutcome (409 duplicate flag)",
        await s.call("POST", "/fhir/Flag", 409, flag("child-protection-plan", CHILD)),
    )
    await s.put({"resourceType": "Practitioner", "id": "gone", "name": [{"family": "Gone"}]})
    await s.call("DELETE", "/fhir/Practitioner/gone", 204)
    o.add("OperationOutcome (410)", await s.call("GET", "/fhir/Practitioner/gone", 410))
    o.add(
        "OperationOutcome (412)",
        await s.call(
            "PUT",
            "/fhir/Practitioner/hv",
            412,
            {"resourceType": "Practitioner", "id": "hv"},
            headers={"If-Match": 'W/"9"'},
        ),
    )
    o.add(
        "OperationOutcome (422 NHS number)",
        await s.call(
            "POST",
            "/fhir/Patient",
            422,
            {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990000017"}]},
        ),
    )
    o.add(
        "OperationOutcome (422 profile)",
        await s.call("POST", "/fhir/Flag", 422, flag("fgm", MOTHER) | {"code": {"text": "no code"}}),
    )


async def notifications(s: Scenario) -> None:
    """The ed-attendance (full-resource) and access-notification (id-only) notifications, a handshake,
    and `$status` / `$events` answers, each to be checked against the Backport IG profile it claims."""
    o = s.out

    def add(label: str, resource: dict[str, Any]) -> None:
        o.add(label, resource, profile_of(resource))

    await s.deliver(lambda: len(s.receiver.of_type("event-notification")) >= 2)
    by_topic: dict[str, dict[str, Any]] = {}
    for r in s.receiver.of_type("event-notification"):
        params = r.json["entry"][0]["resource"]["parameter"]
        topic = next((p.get("valueCanonical") for p in params if p["name"] == "topic"), "empty")
        by_topic.setdefault(str(topic), r.json)
    add("Bundle (notification, full-resource)", by_topic[TOPIC + "ed-attendance"])
    add("Bundle (notification, id-only)", by_topic[TOPIC + "access-notification"])
    add("Bundle (notification, handshake)", s.receiver.of_type("handshake")[0].json)
    sub = s.ed_subscription
    status = await s.search(f"/fhir/Subscription/{sub}/$status")
    add("Bundle ($status)", status)
    add("Parameters ($status)", status["entry"][0]["resource"])
    add("Bundle ($events)", await s.search(f"/fhir/Subscription/{sub}/$events?eventsSinceNumber=1"))


async def audit_events(s: Scenario) -> None:
    """One AuditEvent of each interaction kind (read, search, create, update, refused)."""
    found = await s.search("/fhir/AuditEvent?_count=500&_sort=-date")
    seen: set[str] = set()
    for entry in found["entry"]:
        event = entry["resource"]
        if event.get("resourceType") != "AuditEvent":
            continue
        subtype = event.get("subtype", [{}])[0].get("code", "?")
        kind = f"{subtype}, outcome {event.get('outcome')}"
        if kind not in seen:
            seen.add(kind)
            s.out.add(f"AuditEvent ({kind})", event)
