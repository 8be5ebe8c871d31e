"""The in-memory matcher (subscriptions) and the SQL search agree: a table of queries runs through the
database (both of them) and through `matcher.matches` over the same resources, with the same result."""

from __future__ import annotations

from typing import Any

import httpx

from app.fhir.search.matcher import matches
from tests.api.test_search_fixtures import (
    NHS,
    ODS,
    communication,
    create,
    end_flag,
    flag,
    ids,
    organization,
    patient,
    put,
)
from tests.conftest import FHIR
from tests.support.filters import parse_filter


async def _world(client: httpx.AsyncClient) -> None:
    await put(client, {**organization("Leeds City Council", "LA1"), "id": "la"})
    await put(client, {**organization("Leeds General Infirmary ED", "RR801"), "id": "ed"})
    await put(client, {"resourceType": "PractitionerRole", "id": "hv", "organization": {"reference": "Organization/la"}})
    await put(client, {**patient("9990000018", "Smith", "Amy", birth="2020-02-03", gender="female"), "id": "amy"})
    await put(client, {**patient("9990000026", "Ngọc", "Zoë", birth="2016-05-05", active=True), "id": "zoe"})
    await put(client, {**patient("9990000034", "Smithson", "Ben", birth="2024-12-31"), "id": "ben"})
    await create(client, flag("Patient/amy", "Organization/la", start="2025-03-01"))
    await create(client, flag({"type": "Patient", "identifier": {"system": NHS, "value": "9990000026"}},
                              "PractitionerRole/hv", "fgm", start="2026-01-02"))
    ended = await create(client, flag(f"{FHIR}/Patient/ben", "Organization/ed", "risk-to-self", start="2025-01-01"))
    await end_flag(client, ended, end="2025-06-30")
    await create(client, flag("Patient/zoe", "Organization/la", "looked-after-child", start="2024-01-01",
                              end="2026-12-31"))
    await create(client, communication("Patient/amy", "PractitionerRole/hv", sent="2026-01-05T10:00:00Z"))
    await create(client, communication("Patient/zoe", "Organization/la", "did-not-wait",
                                       sent="2026-01-05T11:30:00+01:00"))
    await create(client, communication("Patient/ben", "PractitionerRole/hv", "think-family"))
    assert (await client.delete("/fhir/Patient/ben")).status_code == 204


QUERIES: list[tuple[str, str]] = [
    ("Flag", "status=active"),
    ("Flag", "status:not=active"),
    ("Flag", "status=active,inactive&category=fgm"),
    ("Flag", "category=https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category|fgm"),
    ("Flag", "category=|fgm"),
    ("Flag", "code=http://snomed.info/sct|"),
    ("Flag", "patient=Patient/amy"),
    ("Flag", "patient=ben"),
    ("Flag", f"subject={FHIR}/Patient/ben"),
    ("Flag", "subject:Patient=zoe"),
    ("Flag", "subject:Organization=zoe"),
    ("Flag", f"patient:identifier={NHS}|9990000026"),
    ("Flag", "patient:identifier=9990000018,9990000034"),
    ("Flag", f"patient.identifier={NHS}|9990000018"),
    ("Flag", "patient.name=ngoc"),
    ("Flag", "patient.birthdate=lt2018"),
    ("Flag", "patient.active=true"),
    ("Flag", "author=Organization/la"),
    ("Flag", "author.name=leeds g"),
    ("Flag", "author:PractitionerRole.organization=Organization/la"),
    ("Flag", f"author:identifier={ODS}|RR801"),
    ("Flag", "author:missing=false&encounter:missing=true"),
    ("Flag", "date=2025"),
    ("Flag", "date=ge2026-01-01"),
    ("Flag", "date=lt2025-01-01"),
    ("Flag", "date=sa2025-12-31"),
    ("Flag", "date=eb2026-01-01"),
    ("Flag", "date=ne2025"),
    ("Flag", "date=ap2026-01-03"),
    ("Flag", "date=le2025-06-30T12:00:00Z"),
    ("Flag", "_id=nothing"),
    ("Flag", "_lastUpdated=ge2026-01-05T09:00:09Z"),
    ("Flag", "_lastUpdated=lt2026-01-05T09:00:09Z&status=active"),
    ("Flag", "_tag:missing=true"),
    ("Patient", "name=smi"),
    ("Patient", "name:contains=MITH"),
    ("Patient", "family:exact=Ngọc"),
    ("Patient", "given=zoe,amy"),
    ("Patient", "birthdate=gt2019&birthdate=le2021"),
    ("Patient", "gender:missing=true"),
    ("Patient", "active:not=true"),
    ("Patient", f"identifier={NHS}|"),
    ("Communication", "recipient=PractitionerRole/hv"),
    ("Communication", "recipient=PractitionerRole/hv&patient=Patient/amy"),
    ("Communication", "recipient=PractitionerRole/hv&patient=Patient/ben"),
    ("Communication", "category=did-not-wait,think-family"),
    ("Communication", "sent=2026-01-05"),
    ("Communication", "sent=gt2026-01-05T10:00:00Z"),
    ("Communication", "sent:missing=true"),
    ("Communication", f"patient:identifier={NHS}|9990000026"),
    ("Communication", "recipient:PractitionerRole.organization.name=leeds city"),
]


async def _all(client: httpx.AsyncClient, rtype: str) -> list[dict[str, Any]]:
    r = await client.get(f"/fhir/{rtype}?_count=500")
    return [e["resource"] for e in r.json().get("entry", [])]


async def test_matcher_agrees_with_sql(client: httpx.AsyncClient) -> None:
    await _world(client)

    async def resolve(rtype: str, rid: str) -> dict[str, Any] | None:
        r = await client.get(f"/fhir/{rtype}/{rid}")
        return r.json() if r.status_code == 200 else None

    candidates = {t: await _all(client, t) for t in {t for t, _ in QUERIES}}
    seen_sizes = set()
    for rtype, query in QUERIES:
        sql = await ids(client, f"/fhir/{rtype}?{query}&_count=500")
        _, criteria = parse_filter(f"{rtype}?{query}", FHIR)
        memory = [c["id"] for c in candidates[rtype] if await matches(rtype, c, criteria, resolve)]
        assert memory == sql, (rtype, query)
        seen_sizes.add(len(sql))
    # the table is not vacuous: it has queries that match none, one and several resources
    assert {0, 1, 2} <= seen_sizes
