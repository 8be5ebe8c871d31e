"""An operation the server does not serve is answered 400 `not-supported` naming it, on GET and POST and
at every level, never read as a logical id (400 "not a valid FHIR id") nor refused as a method (405);
one that is served there, asked with another method, is 405 with Allow. Both databases."""

from __future__ import annotations

import httpx
import pytest

from tests.support.fhir_data import outcome


def unsupported(name: str, where: str) -> dict[str, object]:
    return outcome("not-supported", f"SF-0260: Operation ${name} is not supported {where}")


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(("path", "name", "where"), [
    ("/fhir/Patient/$everything", "everything", "on Patient"),
    ("/fhir/Patient/p1/$everything", "everything", "on a Patient instance"),
    ("/fhir/$export", "export", "at the system level"),
    ("/fhir/Flag/$safeguarding-summary", "safeguarding-summary", "on Flag"),  # ours, on the wrong type
    ("/fhir/Flag/f1/$safeguarding-summary", "safeguarding-summary", "on a Flag instance"),
    ("/fhir/Patient/$safeguarding-summary", "safeguarding-summary", "on Patient"),  # ours, at the wrong level
    ("/fhir/Subscription/$events", "events", "on Subscription"),
    ("/fhir/Binary/$everything", "everything", "on Binary"),
    ("/fhir/CodeSystem/$lookup", "lookup", "on CodeSystem"),
    ("/fhir/Flag/f1/$meta", "meta", "on a Flag instance"),
])
async def test_unknown_operations_are_not_supported(
    client: httpx.AsyncClient, method: str, path: str, name: str, where: str
) -> None:
    r = await client.request(method, path, json={"resourceType": "Parameters"} if method == "POST" else None)
    assert (r.status_code, r.json()) == (400, unsupported(name, where)), (method, path)


@pytest.mark.parametrize(("method", "path", "name", "allowed"), [
    ("GET", "/fhir/Flag/$validate", "validate", "POST"),
    ("GET", "/fhir/Flag/f1/$validate", "validate", "POST"),
    ("POST", "/fhir/$governance-report", "governance-report", "GET"),
    ("POST", "/fhir/Patient/p1/$safeguarding-summary", "safeguarding-summary", "GET"),
    ("POST", "/fhir/Subscription/s1/$status", "status", "GET"),
    ("GET", "/fhir/Subscription/$get-ws-binding-token", "get-ws-binding-token", "POST"),
])
async def test_a_served_operation_with_another_method_is_405(
    client: httpx.AsyncClient, method: str, path: str, name: str, allowed: str
) -> None:
    r = await client.request(method, path)
    assert (r.status_code, r.headers["allow"], r.json()) == (405, allowed, outcome(
        "not-supported", f"SF-0261: ${name} is not invoked with {method} here (allowed: {allowed})")), path


async def test_a_token_is_still_needed(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient/$everything", headers={"Authorization": ""})
    assert r.status_code == 401


async def test_ids_are_still_checked(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient/a$b")
    assert (r.status_code, r.json()["issue"][0]["code"]) == (400, "invalid")
    assert "not a valid FHIR id" in r.json()["issue"][0]["diagnostics"]
