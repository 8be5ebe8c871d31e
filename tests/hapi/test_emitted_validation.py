"""Everything SafeFlag emits validates on the real HAPI FHIR server against SafeFlag's own profiles (issue 7).

All of fhir_profiles/ (CodeSystems, ValueSets, StructureDefinitions, SearchParameters) is PUT to the HAPI
sandbox; every fhir_profiles example is `$validate`d against its profile; then the end-to-end scenarios of
tests/hapi/emitted.py make SafeFlag emit flags of every category, ED notices and acknowledgement Tasks,
escalations, an access notification, a referral copy (Binary, DocumentReference, Communication, QA Task,
outcome), Subscriptions and the notification Bundles a real receiver got, searchset/history/batch/
transaction Bundles, OperationOutcomes of each error status, the CapabilityStatement and AuditEvents; each
is `$validate`d against its profile (ours where one applies, the Subscriptions Backport IG's for what claims
one, else core): zero errors, for every kind.

The Backport IG (STU 1.1) is not reachable offline (no FHIR package registry here), so tests/hapi/backport/
holds the definitions SafeFlag uses, transcribed from the published IG as differentials: the two R4 profiles
its notification Bundles and `$status`/`$events` answers claim, the Subscription and CapabilityStatement
extensions and the value sets they bind. They are PUT to HAPI before fhir_profiles/ and HAPI generates their
snapshots; a notification broken on purpose fails them, so the zero is a real check.
https://hl7.org/fhir/R4/resource-operation-validate.html
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.fhir.profiles import profiles_for
from tests.hapi.conformance import (
    DOM6,
    PROFILES_DIR,
    SD,
    backport_resources,
    conformance_resources,
    errors,
    examples,
    profile_of,
    summary,
    upload_backport,
    upload_profiles,
    validate,
)
from tests.hapi.emitted import Emitted, scenario

pytestmark = pytest.mark.hapi

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = BACKPORT + "backport-subscription-notification-r4"
# HAPI's note on each notification entry after the first (open slicing: the focus resources may follow)
NOT_STATUS_SLICE = (
    f"This element does not match any known slice defined in the profile {NOTIFICATION_PROFILE}|1.1.0 (this "
    "may not be a problem, but you should check that it's not intended to match a slice) - Does not match slice "
    "'subscriptionStatus' (discriminator: (resource is Parameters))"
)

# Every kind of resource the scenarios make SafeFlag emit, AuditEvents aside (their own test below).
EMITTED = [
    "Organization (local authority)",
    "PractitionerRole (health-visitor)",
    "PractitionerRole (safeguarding-lead)",
    "Patient (child)",
    "Patient (mother)",
    "RelatedPerson (father)",
    "CareTeam",
    *(
        f"Flag ({c})"
        for c in (
            "child-protection-plan",
            "looked-after-child",
            "unborn-child-protection-plan",
            "fgm",
            "risk-to-self",
            "risk-to-others",
            "risk-from-others",
            "exploitation-risk",
            "significant-adult",
            "did-not-wait",
            "not-brought",
            "ended, status-reason",
        )
    ),
    "Subscription (ed-attendance, as created)",
    "Subscription (read, active)",
    "Encounter (ED attendance)",
    "Communication (ed-attendance)",
    "Task (acknowledge, ed-attendance)",
    "Communication (did-not-wait)",
    "Task (acknowledge, did-not-wait)",
    "Communication (think-family)",
    "Task (acknowledge, think-family)",
    "Communication (escalation)",
    "Task (escalated)",
    "Task (acknowledged)",
    "Communication (ed-attendance, unrouted)",
    "Task (acknowledge, unrouted)",
    "Bundle (searchset, CP-IS check with _include)",
    "Bundle ($safeguarding-summary)",
    "Communication (access-notification)",
    "Bundle (transaction-response)",
    "Binary (referral document)",
    "DocumentReference (referral copy)",
    "Communication (mash-referral)",
    "DocumentReference (inline copy)",
    "DocumentReference (entered-in-error)",
    "Task (referral-qa)",
    "Communication (referral-outcome)",
    "Bundle (history, instance)",
    "Bundle (history, type, paged)",
    "Bundle (searchset, paged, _revinclude)",
    "Bundle (searchset with a withheld-records outcome)",
    "Bundle (batch-response)",
    "CapabilityStatement",
    "OperationOutcome ($validate)",
    "OperationOutcome (400 bad JSON)",
    "OperationOutcome (400 base rule)",
    "OperationOutcome (401)",
    "OperationOutcome (403)",
    "OperationOutcome (404)",
    "OperationOutcome (405)",
    "OperationOutcome (409 duplicate flag)",
    "OperationOutcome (410)",
    "OperationOutcome (412)",
    "OperationOutcome (422 NHS number)",
    "OperationOutcome (422 profile)",
    "Bundle (notification, full-resource)",
    "Bundle (notification, id-only)",
    "Bundle (notification, handshake)",
    "Bundle ($status)",
    "Parameters ($status)",
    "Bundle ($events)",
]
NOTIFICATIONS = {
    "Bundle (notification, full-resource)",
    "Bundle (notification, id-only)",
    "Bundle (notification, handshake)",
    "Bundle ($events)",
    "Parameters ($status)",
}


@pytest.fixture(scope="module")
async def hapi_profiles(hapi_base_url: str) -> AsyncIterator[list[str]]:
    """fhir_profiles/ on HAPI (what is returned), after the Backport IG definitions they and SafeFlag use."""
    async with httpx.AsyncClient(base_url=hapi_base_url, timeout=120.0) as http:
        await upload_backport(http)
        yield await upload_profiles(http)


@pytest.fixture(scope="module")
async def emitted() -> AsyncIterator[Emitted]:
    with tempfile.TemporaryDirectory(prefix="safeflag-hapi-emitted-") as tmp:
        async with scenario(Path(tmp)) as s:
            yield await s.run()


def _notable(issues: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Issues other than the narrative best-practice warning every resource here gets, HAPI's "No issues
    detected" and the note it adds once its background job has pre-expanded a ValueSet (present or not
    depending on that job's timing)."""
    return [
        i
        for i in summary(issues)
        if i[2] != DOM6
        and i != ("information", "", "No issues detected during validation")
        and not (
            i[0] == "information"
            and i[2].startswith(
                "Code validation occurred using a ValueSet expansion that was pre-calculated at "
            )
        )
    ]


async def test_all_conformance_resources_are_on_hapi(
    hapi: httpx.AsyncClient, hapi_profiles: list[str]
) -> None:
    folders = {r["resourceType"] for r in conformance_resources()}
    assert folders == {"CodeSystem", "ValueSet", "StructureDefinition", "SearchParameter", "ConceptMap",
                       "OperationDefinition"}
    assert len(hapi_profiles) == len(conformance_resources()) == 10 + 14 + 13 + 5 + 1 + 3
    # every conformance resource of fhir_profiles/ but the SubscriptionTopic descriptors (see conformance.py)
    on_disk = {p.parent.name for p in PROFILES_DIR.glob("*/*.json")} - {"examples", "SubscriptionTopic"}
    assert on_disk == folders
    stored = (await hapi.get("/StructureDefinition", params={"url": SD + "safeguarding-flag"})).json()
    assert [e["resource"]["id"] for e in stored["entry"]] == ["safeguarding-flag"]
    expanded = (
        await hapi.get(
            "/ValueSet/$expand", params={"url": "https://fhir.safeflag.example/ValueSet/safeguarding-task"}
        )
    ).json()
    assert [c["code"] for c in expanded["expansion"]["contains"]] == ["acknowledge", "referral-qa"]


@pytest.mark.parametrize("name", [name for name, _ in examples()])
async def test_every_example_validates(hapi: httpx.AsyncClient, hapi_profiles: list[str], name: str) -> None:
    resource = dict(examples())[name]
    profile = profile_of(resource)
    assert profile.startswith(SD) or resource["resourceType"] == "Subscription"
    notable = _notable(await validate(hapi, resource, profile))
    assert [i for i in notable if i[0] in ("error", "fatal")] == []
    if name == "Flag-example-child-protection-plan.json":
        # HL7 `safety` in a category of its own matches no slice of ours: information only
        assert [(sev, expr) for sev, expr, _ in notable] == [("information", "Flag.category[1]")]
    else:
        assert notable == []


def test_scenarios_emit_every_kind(emitted: Emitted) -> None:
    audit = [label for label in emitted.resources if label.startswith("AuditEvent (")]
    assert [label for label in emitted.resources if label not in audit] == EMITTED
    kinds = {label.removeprefix("AuditEvent (").removesuffix(")") for label in audit}
    assert {
        "read, outcome 0",
        "read, outcome 4",
        "search-type, outcome 0",
        "search-type, outcome 4",
        "create, outcome 0",
        "update, outcome 0",
        "patch, outcome 0",
        "delete, outcome 0",
        "operation, outcome 0",
        "history-instance, outcome 0",
        "history-type, outcome 0",
    } <= kinds
    bundle_types = {r["type"] for r in emitted.resources.values() if r["resourceType"] == "Bundle"}
    assert bundle_types == {"searchset", "history", "transaction-response", "batch-response"}


@pytest.mark.parametrize("label", EMITTED)
async def test_emitted_resource_validates(
    hapi: httpx.AsyncClient, hapi_profiles: list[str], emitted: Emitted, label: str
) -> None:
    resource, profile = emitted.resources[label], emitted.profiles[label]
    if profile.startswith(SD):
        # the profile we check on HAPI is one SafeFlag itself applies to what it emits
        assert profile in profiles_for(resource)
    issues = await validate(hapi, resource, profile)
    assert summary(errors(issues)) == [], summary(issues)
    if label in NOTIFICATIONS:
        # checked against the Backport IG profile it claims; nothing to note but the entries after the status
        assert profile == {"Bundle": NOTIFICATION_PROFILE, "Parameters": STATUS_PROFILE}[resource["resourceType"]]
        assert _notable(issues) == [
            ("information", f"Bundle.entry[{i}]", NOT_STATUS_SLICE) for i in range(1, len(resource.get("entry", [])))
        ]
    if label.startswith("Task ("):
        # `escalated` (Task.businessStatus) is a code of SafeFlag's safeguarding-task CodeSystem
        assert [i for i in summary(issues) if i[1].startswith("Task.businessStatus")] == []


async def test_backport_definitions_are_on_hapi(hapi: httpx.AsyncClient, hapi_profiles: list[str]) -> None:
    """HAPI holds the transcribed Backport IG definitions and generates their snapshots from the R4 base."""
    definitions = [r for r in backport_resources() if r["resourceType"] == "StructureDefinition"]
    assert sorted(r["id"] for r in definitions) == [
        "backport-filter-criteria", "backport-heartbeat-period", "backport-max-count", "backport-payload-content",
        "backport-subscription-notification-r4", "backport-subscription-status-r4", "backport-timeout",
        "capabilitystatement-subscriptiontopic-canonical",
    ]
    snapshots = {}
    for sd in definitions:
        assert "snapshot" not in sd and sd["version"] == "1.1.0"
        response = await hapi.get(f"/StructureDefinition/{sd['id']}/$snapshot")
        assert response.status_code == 200, response.text
        snapshots[sd["id"]] = {e["id"]: e for e in response.json()["snapshot"]["element"]}
    status = snapshots["backport-subscription-status-r4"]
    assert (status["Parameters.parameter"]["min"], status["Parameters.parameter"]["max"]) == (3, "*")
    event_number = status["Parameters.parameter:notificationEvent.part:eventNumber.value[x]"]
    assert (event_number["min"], event_number["type"]) == (1, [{"code": "string"}])
    bundle = snapshots["backport-subscription-notification-r4"]["Bundle"]
    assert "backport-notification-bundle-r4-1" in [c["key"] for c in bundle["constraint"]]
    content_vs = "http://hl7.org/fhir/uv/subscriptions-backport/ValueSet/backport-content-value-set"
    assert snapshots["backport-payload-content"]["Extension.value[x]"]["binding"]["valueSet"] == content_vs
    for url, codes in [
        (content_vs, ["empty", "id-only", "full-resource"]),
        ("http://hl7.org/fhir/ValueSet/subscription-notification-type",
         ["handshake", "heartbeat", "event-notification", "query-status", "query-event"]),
    ]:
        expanded = (await hapi.get("/ValueSet/$expand", params={"url": url})).json()
        assert [c["code"] for c in expanded["expansion"]["contains"]] == codes


async def test_backport_profiles_are_enforced(
    hapi: httpx.AsyncClient, hapi_profiles: list[str], emitted: Emitted
) -> None:
    """A notification that breaks the Backport IG profiles is an error on HAPI: the zero above is a real check."""
    notification = emitted.resources["Bundle (notification, full-resource)"]
    status_id = notification["entry"][0]["resource"]["id"]
    no_type = copy.deepcopy(notification)
    status = no_type["entry"][0]["resource"]
    status["parameter"] = [p for p in status["parameter"] if p["name"] != "type"]
    assert summary(errors(await validate(hapi, no_type, NOTIFICATION_PROFILE))) == [(
        "error", f"Bundle.entry[0].resource/*Parameters/{status_id}*/",
        (
            f"Slice 'Parameters.parameter:type': a matching slice is required, but not found (from "
            f"{STATUS_PROFILE}|1.1.0). Note that other slices are allowed in addition to this required slice"
        ),
    )]
    focus_first = copy.deepcopy(notification)
    focus_first["entry"][:2] = focus_first["entry"][1::-1]
    assert summary(errors(await validate(hapi, focus_first, NOTIFICATION_PROFILE))) == [(
        "error", "Bundle",
        (
            "Constraint failed: backport-notification-bundle-r4-1: 'A notification bundle MUST have a Parameters "
            f"as the first entry' (defined in {NOTIFICATION_PROFILE})"
        ),
    )]


async def test_every_audit_event_kind_validates(
    hapi: httpx.AsyncClient, hapi_profiles: list[str], emitted: Emitted
) -> None:
    failures = {}
    for label, event in emitted.resources.items():
        if label.startswith("AuditEvent ("):
            found = summary(errors(await validate(hapi, event, emitted.profiles[label])))
            if found:
                failures[label] = found
    assert failures == {}
