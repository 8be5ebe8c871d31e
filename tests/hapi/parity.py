"""The two servers of the parity tests (test_parity*.py): SafeFlag as a real `safeflag serve` process and the
HAPI FHIR sandbox, behind one interface, so that each test is written once and run against both.

Where the servers differ, a test states it with `target.expect(hapi=..., safeflag=...)`; docs/hapi-sandbox.md "Differences
from HAPI FHIR" lists each difference with its reason. HAPI gets SafeFlag's conformance resources first
(fhir_profiles/, including the `Flag?status` and `Flag?category` SearchParameters that R4 lacks), so that the
same searches mean the same on both. The test data is valid for SafeFlag (its profiles and flag rules) and
HAPI (referential integrity); ids and NHS numbers are fresh per test: HAPI's database lives for the session.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fhirpy import AsyncFHIRClient

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from tests.e2e.server import RunningServer, start_server
from tests.hapi.conformance import FHIR_JSON, search_parameters_ready, upload_profiles

CS = "https://fhir.safeflag.example/CodeSystem/"
SD = "https://fhir.safeflag.example/StructureDefinition/"
SNOMED = "http://snomed.info/sct"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ID_ON_CREATE = {"hapi": r"[0-9]+", "safeflag": UUID}  # HAPI: sequential numbers; SafeFlag: UUIDs


@dataclass
class Server:
    name: str  # "hapi" or "safeflag"
    base: str  # FHIR base URL
    headers: dict[str, str] = field(default_factory=dict)

    def expect(self, *, hapi: Any, safeflag: Any) -> Any:
        """The value this server is expected to give where the two differ."""
        return {"hapi": hapi, "safeflag": safeflag}[self.name]

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base, headers={"Accept": FHIR_JSON, **self.headers}, timeout=60.0
        )

    def fhirpy(self) -> AsyncFHIRClient:
        return AsyncFHIRClient(self.base, extra_headers=self.headers)


@pytest.fixture(scope="module")
def safeflag_process() -> Iterator[RunningServer]:
    srv = start_server()  # SQLite in a fresh data directory; admin token from `safeflag token`
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture(scope="module", params=["safeflag", "hapi"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    if request.param == "safeflag":
        srv: RunningServer = request.getfixturevalue("safeflag_process")
        yield Server("safeflag", srv.fhir_base, dict(srv.headers))
        return
    base: str = request.getfixturevalue("hapi_base_url")
    async with httpx.AsyncClient(base_url=base, timeout=120.0) as hapi:
        await upload_profiles(hapi)
        await search_parameters_ready(hapi)
    yield Server("hapi", base)


@pytest.fixture
async def http(target: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with target.http() as client:
        yield client


def unique(prefix: str) -> str:
    """A client-assigned id nobody used before: letters first (HAPI refuses all-numeric client ids)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def patient(nhs: str, family: str = "Parity", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs}],
        "name": [{"family": family, "given": ["Alex"]}],
        "birthDate": "2021-04-05",
        **extra,
    }


def organization(name: str = "Example Borough Children's Services", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "name": name,
        "telecom": [{"system": "phone", "value": "01632 960001", "use": "work"}],
        **extra,
    }


def flag(
    subject: str,
    author: str,
    category: str = "child-protection-plan",
    code: str = "342191000000101",
    start: str = "2026-01-05",
    **extra: Any,
) -> dict[str, Any]:
    """A safeguarding Flag valid for SafeFlag's profile and rules (contract sections 4 and 5)."""
    return {
        "resourceType": "Flag",
        "status": "active",
        "category": [{"coding": [{"system": CS + "safeguarding-flag-category", "code": category}]}],
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": subject},
        "period": {"start": start},
        "author": {"reference": author},
        **extra,
    }


def status_reason(code: str = "plan-ended") -> dict[str, Any]:
    return {
        "url": SD + "status-reason",
        "valueCodeableConcept": {"coding": [{"system": CS + "status-reason", "code": code}]},
    }


async def create(http: httpx.AsyncClient, resource: dict[str, Any], **kw: Any) -> dict[str, Any]:
    response = await http.post(
        f"/{resource['resourceType']}",
        json=resource,
        headers={"Content-Type": FHIR_JSON, **kw.pop("headers", {})},
        **kw,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def content(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without `meta` (HAPI adds meta.source, SafeFlag does not) for content comparisons."""
    return {k: v for k, v in resource.items() if k != "meta"}


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"
    ]


def is_outcome(body: dict[str, Any], severity: str = "error") -> bool:
    """An OperationOutcome whose first issue has this severity (HAPI and SafeFlag word them differently)."""
    return body.get("resourceType") == "OperationOutcome" and body["issue"][0]["severity"] == severity
