"""The conformance resources of fhir_profiles/ served read-only on both databases, and what the
CapabilityStatement says about them, our profiles, the topics and the summary operation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.fhir.profiles import get_store
from tests.conftest import FHIR
from tests.safeguarding.support import oo
from tests.support.fhir_data import unidentified

SD = "https://fhir.safeflag.example/StructureDefinition/"
TYPES = ("StructureDefinition", "CodeSystem", "ValueSet", "SearchParameter", "ConceptMap", "OperationDefinition")


def found(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def search(client: httpx.AsyncClient, url: str, **kw: Any) -> dict[str, Any]:
    r = await client.get(url, **kw)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_read_each_type_by_id(client: httpx.AsyncClient) -> None:
    store = get_store()
    for rtype, rid in (("StructureDefinition", "safeguarding-flag"), ("CodeSystem", "care-setting"),
                       ("ValueSet", "unscheduled-care-setting"), ("SearchParameter", "flag-status"),
                       ("ConceptMap", "flag-category-to-code")):
        r = await client.get(f"/fhir/{rtype}/{rid}")
        assert (r.status_code, r.json()) == (200, store.read(rtype, rid)), rtype
    r = await client.get("/fhir/CodeSystem/nope")
    assert (r.status_code, r.json()) == (404, oo({"severity": "error", "code": "not-found",
                                                  "diagnostics": "SF-0301: CodeSystem/nope is not known",
                                                  "expression": ["id"]}))


async def test_search_by_canonical_parameters(client: httpx.AsyncClient) -> None:
    assert found(await search(client, "/fhir/StructureDefinition?type=Flag")) == ["safeguarding-flag"]
    assert found(await search(client, f"/fhir/StructureDefinition?url={SD}status-reason|0.1.0")) == ["status-reason"]
    assert found(await search(client, "/fhir/StructureDefinition?name=SafeguardingPatient&status=active")) == [
        "safeguarding-patient"]
    assert found(await search(client, "/fhir/ValueSet?url=https://fhir.safeflag.example/ValueSet/care-setting,"
                                      "https://fhir.safeflag.example/ValueSet/injury-reason")) == [
        "care-setting", "injury-reason"]
    assert sorted(found(await search(client, "/fhir/SearchParameter?base=Flag"))) == [
        "flag-category", "flag-code", "flag-status"]
    assert found(await search(client, "/fhir/SearchParameter?code=status&type=token")) == ["flag-status"]
    assert found(await search(client, "/fhir/ConceptMap?_id=flag-category-to-code")) == ["flag-category-to-code"]
    assert found(await search(client, "/fhir/CodeSystem?version=9.9.9")) == []
    count = await search(client, "/fhir/CodeSystem?_summary=count")
    assert (count["total"], "entry" in count) == (len(get_store().resources("CodeSystem")), False)


async def test_paging_elements_and_unknown_parameters(client: httpx.AsyncClient) -> None:
    total = len(get_store().resources("CodeSystem"))
    first = await search(client, "/fhir/CodeSystem?status=active&_count=4&_elements=url")
    assert (first["type"], first["total"], len(found(first))) == ("searchset", total, 4)
    assert first["entry"][0]["resource"]["meta"]["tag"][0]["code"] == "SUBSETTED"
    assert set(first["entry"][0]["resource"]) == {"resourceType", "id", "meta", "url", "status", "content"}
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert links["next"] == f"{FHIR}/CodeSystem?status=active&_elements=url&_count=4&_offset=4"
    seen = found(first)
    url: str | None = links["next"]
    while url:
        page = await search(client, url.removeprefix("http://127.0.0.1:8080"))
        seen += found(page)
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted(r["id"] for r in get_store().resources("CodeSystem"))
    lenient = await search(client, "/fhir/ValueSet?publisher=SafeFlag&_sort=url&_count=1")
    assert unidentified(lenient["entry"][-1]) == {"search": {"mode": "outcome"}, "resource": oo(*[
        {"severity": "warning", "code": "not-supported", "expression": [p],
         "diagnostics": f"SF-0400: Unknown search parameter '{p}' for ValueSet was ignored"}
        for p in ("publisher", "_sort")])}
    r = await client.get("/fhir/ValueSet?publisher=SafeFlag", headers={"Prefer": "handling=strict"})
    assert (r.status_code, r.json()) == (400, oo({
        "severity": "error", "code": "not-supported", "expression": ["publisher"],
        "diagnostics": "SF-0400: Unknown search parameter 'publisher' for ValueSet"}))


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/fhir/StructureDefinition"), ("PUT", "/fhir/CodeSystem/care-setting"),
    ("PATCH", "/fhir/ValueSet/care-setting"), ("DELETE", "/fhir/ConceptMap/flag-category-to-code"),
    ("PUT", "/fhir/SearchParameter?code=status"), ("DELETE", "/fhir/SearchParameter?code=status"),
])
async def test_writes_are_refused(client: httpx.AsyncClient, method: str, path: str) -> None:
    rtype = path.split("/")[2].split("?")[0]
    r = await client.request(method, path, json={"resourceType": rtype, "id": "care-setting"})
    text = (f"{rtype} resources are the server's own conformance resources (fhir_profiles/) and are read-only: "
            "read and search them")
    assert (r.status_code, r.headers["allow"], r.json()) == (405, "GET", oo({
        "severity": "error", "code": "not-supported", "diagnostics": f"SF-0250: {text}"}))
    interaction = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    [audit] = [e["resource"] for e in (await client.get("/fhir/AuditEvent?outcome=4")).json()["entry"]]
    assert (audit["subtype"][0]["code"], audit["outcomeDesc"]) == (interaction, text)


async def test_a_refused_write_is_answered_byte_for_byte(client: httpx.AsyncClient) -> None:
    """The policy's 405 (app/security/policy.py `refuse_interaction`) is the response a client gets, to the byte."""
    r = await client.delete("/fhir/ValueSet/care-setting")
    assert (r.status_code, r.headers["allow"], r.headers["content-type"]) == (405, "GET", "application/fhir+json; charset=utf-8")
    assert r.content == (
        b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported",'
        b'"diagnostics":"SF-0250: ValueSet resources are the server\'s own conformance resources (fhir_profiles/) '
        b'and are read-only: read and search them"}]}')


async def test_a_token_is_needed(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/StructureDefinition/safeguarding-flag", headers={"Authorization": ""})
    assert r.status_code == 401


async def test_capability_statement(client: httpx.AsyncClient) -> None:
    rest = (await search(client, "/fhir/metadata"))["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    for rtype in TYPES:
        assert by_type[rtype]["interaction"] == [{"code": "read"}, {"code": "search-type"}], rtype
        assert {"name": "url", "definition": "http://hl7.org/fhir/SearchParameter/conformance-url", "type": "uri",
                "documentation": "The canonical URL (a |version suffix is ignored)"} in by_type[rtype]["searchParam"]
    assert by_type["Flag"]["supportedProfile"] == [SD + "safeguarding-flag"]
    assert by_type["Patient"]["supportedProfile"] == [SD + "safeguarding-patient"]
    assert "supportedProfile" not in by_type["Organization"]
    topic = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
    assert by_type["Subscription"]["extension"] == [
        {"url": topic, "valueCanonical": f"https://fhir.safeflag.example/SubscriptionTopic/{name}"}
        for name in ("access-notification", "ed-attendance", "mash-referral", "safeguarding-flag")]
    summary = {"name": "safeguarding-summary",
               "definition": "https://fhir.safeflag.example/OperationDefinition/Patient-safeguarding-summary"}
    assert summary in by_type["Patient"]["operation"] and summary not in by_type["Flag"]["operation"]
