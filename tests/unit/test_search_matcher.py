"""The in-memory matcher used by subscriptions, without a database: a dict stands in for storage."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import BadRequest
from app.fhir.search.matcher import matches
from app.fhir.search.params import parse_criterion
from tests.support.filters import parse_filter

BASE = "http://127.0.0.1:8080/fhir"
NHS = "https://fhir.nhs.uk/Id/nhs-number"

STORE: dict[tuple[str, str], dict[str, Any]] = {
    ("Patient", "9"): {"resourceType": "Patient", "id": "9", "identifier": [{"system": NHS, "value": "9990000018"}],
                       "name": [{"family": "Smith"}], "birthDate": "2021-04-01"},
    ("PractitionerRole", "123"): {"resourceType": "PractitionerRole", "id": "123",
                                  "organization": {"reference": "Organization/la"}},
    ("Organization", "la"): {"resourceType": "Organization", "id": "la", "name": "Leeds City Council"},
}

NOTICE = {
    "resourceType": "Communication",
    "id": "c1",
    "meta": {"versionId": "1", "lastUpdated": "2026-01-05T09:00:01.000+00:00"},
    "status": "completed",
    "category": [{"coding": [{"system": "https://fhir.safeflag.example/CodeSystem/safeguarding-communication-category",
                              "code": "ed-attendance"}]}],
    "subject": {"reference": f"{BASE}/Patient/9"},
    "recipient": [{"reference": "PractitionerRole/123"}, {"identifier": {"system": "ods", "value": "RR8"}}],
    "sent": "2026-01-05T09:00:00Z",
}


async def resolve(rtype: str, rid: str) -> dict[str, Any] | None:
    return STORE.get((rtype, rid))


async def check(query: str, content: dict[str, Any] = NOTICE) -> bool:
    rtype, criteria = parse_filter(f"{content['resourceType']}?{query}", BASE)
    return await matches(rtype, content, criteria, resolve)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("recipient=PractitionerRole/123&patient=Patient/9", True),
        ("recipient=PractitionerRole/123&patient=Patient/8", False),
        ("recipient=123", True),
        ("recipient:Organization=123", False),
        (f"recipient={BASE}/PractitionerRole/123", True),
        ("recipient:identifier=ods|RR8", True),
        ("recipient.organization=Organization/la", True),
        ("recipient:PractitionerRole.organization.name=leeds", True),
        ("recipient:PractitionerRole.organization.name:exact=leeds", False),
        (f"patient:identifier={NHS}|9990000018", True),
        (f"patient.identifier={NHS}|9990000018", True),
        ("patient.birthdate=ge2021-04", True),
        ("patient.birthdate=lt2021", False),
        ("category=ed-attendance,did-not-wait", True),
        ("category:not=ed-attendance", False),
        ("sent=2026-01-05", True),
        ("sent=gt2026-01-05T09:00:00Z", False),
        ("received:missing=true&sent:missing=false", True),
        ("_id=c1,c2", True),
        ("_id:not=c1", False),
        ("_lastUpdated=2026-01-05T09:00:01Z", True),
        ("_lastUpdated=gt2026-01-05T09:00:01Z", False),
        ("encounter.status=finished", False),
    ],
)
async def test_subscription_filters(query: str, expected: bool) -> None:
    assert await check(query) is expected


async def test_unresolvable_targets_never_match_a_chain() -> None:
    orphan = {**NOTICE, "subject": {"reference": "Patient/gone"}}
    assert await check("patient.name=smith", orphan) is False
    assert await check("patient=Patient/gone", orphan) is True
    assert await check("patient:identifier=9990000018", orphan) is False


async def test_a_plain_function_resolver_works_too() -> None:
    crit = parse_criterion("Communication", "recipient.organization", "Organization/la", BASE)
    assert crit is not None
    assert await matches("Communication", NOTICE, [crit], lambda t, i: STORE.get((t, i))) is True


async def test_no_criteria_match_everything() -> None:
    assert await matches("Communication", NOTICE, [], resolve) is True


async def test_filters_are_strict() -> None:
    with pytest.raises(BadRequest) as exc:
        parse_filter("Communication?recipient=PractitionerRole/1&colour=red", BASE)
    assert exc.value.outcome() == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-supported", "expression": ["colour"],
         "diagnostics": "SF-0400: Unknown search parameter 'colour' for Communication"}]}
    with pytest.raises(BadRequest) as exc:
        parse_filter("Widget?x=1", BASE)
    assert exc.value.outcome()["issue"][0]["diagnostics"] == "SF-0400: Unknown resource type 'Widget' in filter 'Widget?x=1'"
