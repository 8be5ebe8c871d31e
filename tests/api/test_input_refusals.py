"""Input that used to be accepted and must be refused, on both databases, changing nothing: JSON
objects naming a member twice (400), a `Content-Type` that is no media type (415)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.api.test_errors import FHIR_JSON, assert_outcome
from tests.support.fhir_data import count, create, flag, organization, outcome, patient, post, tx

DUPLICATE = "SF-0016: The JSON object at {at} names '{name}' more than once"


def _with_repeat(resource: dict, text: str, repeat: str) -> bytes:
    """The resource's JSON with `repeat` inserted right after the first occurrence of `text`."""
    raw = orjson.dumps(resource).decode()
    i = raw.index(text) + len(text)
    return (raw[:i] + repeat + raw[i:]).encode()


async def test_repeated_member_on_create_update_and_patch(client: httpx.AsyncClient) -> None:
    la = await create(client, organization())
    child = await create(client, patient())
    body = flag(f"Patient/{child}", f"Organization/{la}")
    raw = _with_repeat(body, '"status":"active"', ',"status":"inactive"')  # which one would a reader see?
    r = await client.post("/fhir/Flag", content=raw, headers=FHIR_JSON)
    assert_outcome(r, 400, outcome("structure", DUPLICATE.format(at="Flag", name="status"), ["Flag.status"]))
    raw = _with_repeat(body, '"subject":{"reference":"Patient/' + child + '"', ' , "reference" :"Patient/x"')
    r = await client.post("/fhir/Flag", content=raw, headers=FHIR_JSON)
    assert_outcome(r, 400, outcome("structure", DUPLICATE.format(at="Flag.subject", name="reference"),
                                   ["Flag.subject.reference"]))
    assert await count(client, "Flag") == 0
    # update: the member inside an array element; the stored version is unchanged
    raw = _with_repeat({**patient(), "id": child}, '"family":"Smith"', ',"family":"Jones"')
    r = await client.put(f"/fhir/Patient/{child}", content=raw, headers=FHIR_JSON)
    assert_outcome(r, 400, outcome("structure", DUPLICATE.format(at="Patient.name[0]", name="family"),
                                   ["Patient.name[0].family"]))
    stored = (await client.get(f"/fhir/Patient/{child}")).json()
    assert stored["meta"]["versionId"] == "1" and stored["name"][0]["family"] == "Smith"
    # a merge patch body is JSON too (the escaped spelling of a name is the same name)
    r = await client.patch(f"/fhir/Patient/{child}", content=b'{"gender":"male","\\u0067ender":"female"}',
                           headers={"content-type": "application/merge-patch+json"})
    assert_outcome(r, 400, outcome("structure", DUPLICATE.format(at="the top level", name="gender"), ["gender"]))
    assert (await client.get(f"/fhir/Patient/{child}")).json()["meta"]["versionId"] == "1"


async def test_repeated_member_in_a_transaction_entry(client: httpx.AsyncClient) -> None:
    bundle = tx(post(patient()), post(organization()))
    raw = _with_repeat(bundle, '"name":"Borough Children\'s Services"', ',"name":"Other"')
    r = await client.post("/fhir", content=raw, headers=FHIR_JSON)
    assert_outcome(r, 400, outcome("structure", DUPLICATE.format(at="Bundle.entry[1].resource", name="name"),
                                   ["Bundle.entry[1].resource.name"]))
    assert await count(client, "Patient") == 0 and await count(client, "Organization") == 0


async def test_text_that_looks_like_a_member_is_not_one(client: httpx.AsyncClient) -> None:
    """A string holding `\\":` and repeated names in different objects are fine."""
    body = patient(extension=[{"url": "https://x.example/note", "valueString": 'said "status": "x", "status":'},
                              {"url": "https://x.example/other", "valueString": "status"}])
    r = await client.post("/fhir/Patient", content=orjson.dumps(body), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    assert r.json()["extension"][0]["valueString"] == 'said "status": "x", "status":'


@pytest.mark.parametrize("content_type", [";;;===///", ";charset=utf-8", "fhir+json", "application/", "/json",
                                          "application/fhir json", "application/fhir+json/x"])
async def test_content_type_that_is_no_media_type(client: httpx.AsyncClient, content_type: str) -> None:
    expected = outcome("not-supported", f"SF-0017: Content-Type '{content_type}' is not a media type; "
                                        "send application/fhir+json")
    body = orjson.dumps(patient())
    assert_outcome(await client.post("/fhir/Patient", content=body, headers={"content-type": content_type}),
                   415, expected)
    assert_outcome(await client.put("/fhir/Patient/p1", content=body, headers={"content-type": content_type}),
                   415, expected)
    assert_outcome(await client.post("/fhir/Patient/_search", content=b"name=x",
                                     headers={"content-type": content_type}), 415, expected)
    assert await count(client, "Patient") == 0
    # a missing Content-Type is still read as JSON, and parameters after a real media type are fine
    assert (await client.post("/fhir/Patient", content=body)).status_code == 201
    ok = await client.post("/fhir/Patient", content=orjson.dumps(patient("9990000026")),
                           headers={"content-type": "application/fhir+json; fhirVersion=4.0"})
    assert ok.status_code == 201, ok.text
    # the token endpoint answers such a header as OAuth does
    r = await client.post("/auth/token", content=b"grant_type=client_credentials", headers={"content-type": content_type})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")


NOT_A_REFERENCE = ("SF-0118: '{ref}' is not a FHIR R4 reference: use Type/id (optionally /_history/n), an absolute "
                   "URL ending so, #id for a contained resource, or urn:uuid: in a Bundle")


@pytest.mark.parametrize("ref", ["Patient/../../etc/passwd", "Patient/..", "../Patient/1", "Patient/1/extra",
                                 "patient/1", "Patient/", "Patient/a b", "file:///etc/passwd",
                                 "https://x.example/fhir/Patient/1/../../2", "urn:uuid:../x", "/_history/",
                                 "urn:oid:1.2.x"])
async def test_reference_outside_the_r4_grammar(client: httpx.AsyncClient, ref: str) -> None:
    la = await create(client, organization())
    body = flag(f"Patient/{await create(client, patient())}", f"Organization/{la}")
    r = await client.post("/fhir/Flag", json={**body, "subject": {"reference": ref}})
    assert_outcome(r, 400, outcome("invalid", NOT_A_REFERENCE.format(ref=ref), ["Flag.subject.reference"]))
    # wherever the Reference is: an array element, an extension's value, a transaction entry
    r = await client.post("/fhir/Patient", json=patient("9990000026", generalPractitioner=[{"reference": ref}]))
    assert_outcome(r, 400, outcome("invalid", NOT_A_REFERENCE.format(ref=ref),
                                   ["Patient.generalPractitioner[0].reference"]))
    r = await client.post("/fhir", json=tx(post({**body, "author": {"reference": ref}})))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.author.reference"]
    assert await count(client, "Flag") == 0 and await count(client, "Patient") == 1


@pytest.mark.parametrize("ref", ["Organization/{id}", "Organization/{id}/_history/1",
                                 "https://other.example/fhir/Organization/o-9", "http://127.0.0.1:8080/fhir/Organization/{id}"])
async def test_references_in_the_r4_grammar(client: httpx.AsyncClient, ref: str) -> None:
    la = await create(client, organization())
    child = await create(client, patient())
    r = await client.post("/fhir/Flag", json={**flag(f"Patient/{child}", ref.format(id=la))})
    assert r.status_code == 201, r.text
