"""Client text in the audit trail: a NUL (U+0000) or any other control character a client sends is
refused with 400 before anything is stored, the refused attempt IS audited on both databases, and what
the AuditEvent echoes of the client's text (the error's wording, the query) carries the character as a
visible `\\uXXXX` escape: PostgreSQL's JSONB cannot hold U+0000, and a raw control character must not
reach whoever later prints the trail."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.security.audit import MAX_TEXT, clean

JSON = {"Content-Type": "application/fhir+json"}


def oo(code: str, diagnostics: str, expression: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": diagnostics, "expression": [expression]}]}


async def attempts(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The refused attempts' AuditEvents, oldest first (the admin's own audit searches succeed)."""
    found = (await client.get("/fhir/AuditEvent", params={"_sort": "date", "_count": "100"})).json()
    return [e["resource"] for e in found.get("entry", []) if e["resource"]["outcome"] != "0"]


@pytest.mark.parametrize("body, status, outcome, desc", [
    ('{"resourceType":"Patient","id":"\\u0000"}', 400,
     oo("invalid", "SF-0102: '\x00' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)", "Patient.id"),
     "'\\u0000' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)"),
    ('{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}', 400,
     oo("value", "SF-0109: A string may not contain control characters at Patient.name[0].family",
        "Patient.name[0].family"),
     "A string may not contain control characters at Patient.name[0].family"),
    ('{"resourceType":"Patient","\\u0000\\u001b[2J":1}', 400,
     oo("structure", "SF-0108: Unknown element '\x00\x1b[2J' in Patient", "Patient.\x00\x1b[2J"),
     "Unknown element '\\u0000\\u001b[2J' in Patient"),
    ('{"resourceType":"Pat\\u0000ient"}', 400,
     oo("invalid", "SF-0101: resourceType 'Pat\x00ient' does not match the URL type 'Patient'", "resourceType"),
     "resourceType 'Pat\\u0000ient' does not match the URL type 'Patient'"),
])
async def test_nul_in_a_body_is_refused_and_audited(
    client: httpx.AsyncClient, body: str, status: int, outcome: dict[str, Any], desc: str
) -> None:
    r = await client.post("/fhir/Patient", content=body, headers=JSON)
    assert (r.status_code, r.json()) == (status, outcome)
    assert (await client.get("/fhir/Patient")).json().get("total") == 0  # nothing stored
    [event] = await attempts(client)
    assert (event["subtype"][0]["code"], event["action"], event["outcome"], event["outcomeDesc"]) == (
        "create", "C", "4", desc)


async def test_nul_in_a_query_is_refused_and_audited(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient", params={"name": "a\x00"})
    assert (r.status_code, r.json()) == (400, oo(
        "invalid", "SF-0401: Search parameters may not contain NUL characters", "name"))
    r = await client.get("/fhir/Patient/_history", params={"_since": "\x00\r\nforged:line"})
    assert (r.status_code, r.json()) == (400, oo(
        "invalid", "SF-0402: Invalid date value '\x00\r\nforged:line' for parameter '_since'", "_since"))
    r = await client.post("/fhir/Patient", content='{"resourceType":"Patient"}',
                          headers={**JSON, "If-None-Exist": "identifier=%00"})
    assert (r.status_code, r.json()) == (400, oo(
        "invalid", "SF-0401: Search parameters may not contain NUL characters", "identifier"))
    search, history, create = await attempts(client)
    assert (search["subtype"][0]["code"], search["outcome"], search["outcomeDesc"]) == (
        "search-type", "4", "Search parameters may not contain NUL characters")
    [query] = [e for e in search["entity"] if e.get("role", {}).get("code") == "24"]
    assert (query["description"], query["query"]) == ("Patient?name=a%00", "UGF0aWVudD9uYW1lPWElMDA=")
    assert (history["subtype"][0]["code"], history["outcome"], history["outcomeDesc"]) == (
        "history-type", "4", "Invalid date value '\\u0000\\u000d\\u000aforged:line' for parameter '_since'")
    assert (create["subtype"][0]["code"], create["outcome"], create["outcomeDesc"]) == (
        "create", "4", "Search parameters may not contain NUL characters")


def test_clean_escapes_control_characters_and_bounds_length() -> None:
    assert clean("plain text, é, 子, and a space") == "plain text, é, 子, and a space"
    assert clean("a\x00b\x07c\x1b[31md\x7fe\x85f\u2028g\ud800h\ti") == (
        "a\\u0000b\\u0007c\\u001b[31md\\u007fe\\u0085f\\u2028g\\ud800h\\u0009i")
    assert clean("x" * MAX_TEXT) == "x" * MAX_TEXT
    assert clean("x" * (MAX_TEXT + 1)) == "x" * (MAX_TEXT - 1) + "\u2026"
    assert clean("\x00" * MAX_TEXT) == ("\\u0000" * MAX_TEXT)[: MAX_TEXT - 1] + "\u2026"
