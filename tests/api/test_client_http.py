"""What real FHIR clients send and expect at the HTTP level, on both databases:

- every write names the version it made in `Location` and `Content-Location` (HAPI's generic client
  takes an update's id from them; `tests/hapi/test_generic_client.py` runs that client);
- conditional read by `If-Modified-Since` as well as `If-None-Match` (RFC 9110 section 13.2.2 order);
- request bodies in `Content-Encoding: gzip` / `deflate`, with the size limit on the decoded body;
  responses gzip-compressed for a client that accepts it;
- `_summary=true|text|data|false` on search and read, marked SUBSETTED;
- the `fhirVersion` media-type parameter: another version than R4 is 406 (Accept) or 415 (Content-Type).
"""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from datetime import datetime

import httpx
import orjson
import pytest

from app.api.compression import MINIMUM_SIZE, accepts_gzip
from app.context import AppContext
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.interactions.bundle_request import _instant as bundle_instant
from app.interactions.outcomes import http_date_value, not_modified
from app.stored import StoredResource
from tests.support.fhir_data import count, create, instant, location, outcome, patient, req, tx

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
FHIR_JSON = "application/fhir+json"


# -- Location and Content-Location on every write ------------------------------------------------
async def test_every_write_names_its_new_version(client: httpx.AsyncClient) -> None:
    made = await client.post("/fhir/Patient", json=patient())  # tick 1
    pid = made.json()["id"]
    assert made.headers["location"] == made.headers["content-location"] == location("Patient", pid, 1)
    updated = await client.put(f"/fhir/Patient/{pid}", json={**patient(family="Jones"), "id": pid})
    assert (updated.status_code, updated.headers["location"], updated.headers["content-location"]) == (
        200, location("Patient", pid, 2), location("Patient", pid, 2))
    patched = await client.patch(f"/fhir/Patient/{pid}", content=b'[{"op": "add", "path": "/gender", '
                                 b'"value": "female"}]', headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200, patched.text
    assert (patched.status_code, patched.headers["location"], patched.headers["content-location"]) == (
        200, location("Patient", pid, 3), location("Patient", pid, 3))
    minimal = await client.put(f"/fhir/Patient/{pid}", json={**patient(family="Brown"), "id": pid},
                               headers={"Prefer": "return=minimal"})
    assert (minimal.status_code, minimal.content, minimal.headers["location"],
            minimal.headers["content-location"]) == (200, b"", location("Patient", pid, 4), location("Patient", pid, 4))
    deleted = await client.delete(f"/fhir/Patient/{pid}")
    assert deleted.status_code == 204 and "location" not in deleted.headers
    assert "content-location" not in deleted.headers


async def test_a_refused_write_names_no_version(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    r = await client.put(f"/fhir/Patient/{pid}", json={**patient(), "id": pid}, headers={"If-Match": 'W/"7"'})
    assert r.status_code == 412
    assert "location" not in r.headers and "content-location" not in r.headers


# -- conditional read -----------------------------------------------------------------------------
async def test_if_modified_since(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # lastUpdated 09:00:01.000
    for url in (f"/fhir/Patient/{pid}", f"/fhir/Patient/{pid}/_history/1"):
        for since in ("Mon, 05 Jan 2026 09:00:01 GMT", "Mon, 05 Jan 2026 09:00:02 GMT",
                      "Monday, 05-Jan-26 09:00:01 GMT", "Mon Jan  5 09:00:01 2026"):
            r = await client.get(url, headers={"If-Modified-Since": since})
            assert (r.status_code, r.content, r.headers["etag"], r.headers["last-modified"]) == (
                304, b"", 'W/"1"', "Mon, 05 Jan 2026 09:00:01 GMT"), since
        for since in ("Mon, 05 Jan 2026 09:00:00 GMT", "not a date", ""):
            r = await client.get(url, headers={"If-Modified-Since": since})
            assert (r.status_code, r.json()["id"], r.headers["last-modified"]) == (
                200, pid, "Mon, 05 Jan 2026 09:00:01 GMT"), since
        # If-None-Match decides when both are sent: an older tag means modified whatever the date says
        later, earlier = "Mon, 05 Jan 2026 09:00:02 GMT", "Mon, 05 Jan 2026 09:00:00 GMT"
        r = await client.get(url, headers={"If-None-Match": 'W/"0"', "If-Modified-Since": later})
        assert r.status_code == 200
        r = await client.get(url, headers={"If-None-Match": 'W/"1"', "If-Modified-Since": earlier})
        assert r.status_code == 304
    await client.put(f"/fhir/Patient/{pid}", json={**patient(family="Jones"), "id": pid})  # tick 2
    r = await client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": "Mon, 05 Jan 2026 09:00:01 GMT"})
    assert (r.status_code, r.json()["meta"]["versionId"], r.headers["etag"]) == (200, "2", 'W/"2"')


async def test_if_modified_since_in_bundle_entries(client: httpx.AsyncClient) -> None:
    """`Bundle.entry.request.ifModifiedSince` is an instant: compared to the millisecond lastModified shows."""
    pid = await create(client, patient())  # lastUpdated 09:00:01.000
    headers = {"etag": 'W/"1"', "lastModified": instant(1)}
    for since, status in (("2026-01-05T09:00:01.000+00:00", "304 Not Modified"),
                          ("2026-01-05T09:00:01Z", "304 Not Modified"),
                          ("2026-01-05T10:00:01.000+01:00", "304 Not Modified"),
                          ("2026-01-05T09:00:00.999+00:00", "200 OK")):
        bundle = tx(req("GET", f"Patient/{pid}", ifModifiedSince=since), kind="batch")
        entry = (await client.post("/fhir", json=bundle)).json()["entry"][0]
        assert entry["response"] == {"status": status, **headers}, since
        assert ("resource" in entry) == (status == "200 OK"), since
    bad = tx(req("GET", f"Patient/{pid}", ifModifiedSince="Mon, 05 Jan 2026 09:00:01 GMT"))
    r = await client.post("/fhir", json=bad)
    where = "Bundle.entry[0].request.ifModifiedSince"
    assert (r.status_code, r.json()) == (400, outcome(
        "value", f"SF-0631: {where} 'Mon, 05 Jan 2026 09:00:01 GMT' is not a FHIR instant "
        "(e.g. 2026-01-05T09:00:01.000+00:00)", [where]))


def test_a_date_covers_its_whole_second_an_instant_its_millisecond() -> None:
    stored = StoredResource(0, "Patient", "p", 2, datetime(2026, 1, 5, 9, 0, 1, 500_000), False, {}, None)
    assert [not_modified(stored, None, http_date_value(f"Mon, 05 Jan 2026 09:00:0{s} GMT")) for s in (0, 1)] == [
        False, True]
    assert [not_modified(stored, None, bundle_instant(f"2026-01-05T09:00:01.{ms}Z")) for ms in ("499", "500")] == [
        False, True]
    assert not_modified(stored, 'W/"1"', http_date_value("Mon, 05 Jan 2026 09:00:02 GMT")) is False


async def test_capability_statement_declares_conditional_read(client: httpx.AsyncClient) -> None:
    body = (await client.get("/fhir/metadata")).json()
    declared = {r["type"]: r.get("conditionalRead") for r in body["rest"][0]["resource"]}
    assert {declared[t] for t in SUPPORTED_TYPES} == {"full-support"}


# -- Content-Encoding ----------------------------------------------------------------------------
@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compressed_body_is_decoded(client: httpx.AsyncClient, coding: str) -> None:
    raw = orjson.dumps(patient())
    body = gzip.compress(raw) if coding == "gzip" else zlib.compress(raw)
    r = await client.post("/fhir/Patient", content=body,
                          headers={"Content-Type": FHIR_JSON, "Content-Encoding": coding})
    assert r.status_code == 201, r.text
    assert (await client.get(f"/fhir/Patient/{r.json()['id']}")).json()["name"] == patient()["name"]


async def test_unusable_encodings_are_refused_and_change_nothing(client: httpx.AsyncClient) -> None:
    raw = orjson.dumps(patient())
    r = await client.post("/fhir/Patient", content=raw, headers={"Content-Type": FHIR_JSON, "Content-Encoding": "br"})
    assert (r.status_code, r.json(), r.headers["accept-encoding"]) == (
        415, outcome("not-supported", "SF-0031: Content-Encoding 'br' is not supported (supported: gzip, deflate)"),
        "gzip, deflate")
    r = await client.post("/fhir/Patient", content=raw, headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"})
    assert (r.status_code, r.json()) == (400, outcome(
        "invalid", "SF-0032: The request body is not valid gzip data: Error -3 while decompressing data: "
        "incorrect header check"))
    r = await client.post("/fhir/Patient", content=gzip.compress(raw)[:-12],
                          headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"})
    assert (r.status_code, r.json()) == (400, outcome("invalid", "SF-0032: The request body ends before its gzip "
                                                                 "data does"))
    assert await count(client, "Patient") == 0


async def test_a_zip_bomb_is_413_without_inflating_it(client: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    limit = clean_ctx.settings.max_body_bytes
    inflated = 10 * limit  # 200 MiB of JSON whitespace; about 200 KiB compressed
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"{" + b" " * (1024 * 1024 - 1)
    parts = [packer.compress(block)] + [packer.compress(b" " * len(block)) for _ in range(inflated // len(block))]
    bomb = b"".join(parts) + packer.flush()
    assert len(bomb) < limit // 50
    tracemalloc.start()
    try:
        r = await client.post("/fhir/Patient", content=bomb,
                              headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (r.status_code, r.json()) == (413, outcome(
        "too-costly", f"SF-0013: Request body exceeds the limit of {limit} bytes once gzip-decoded"))
    assert peak < 3 * limit  # the decoded body is never held beyond the limit (it would be 10 times it)
    assert await count(client, "Patient") == 0


async def test_responses_are_gzipped_when_asked_and_large(client: httpx.AsyncClient) -> None:
    narrative = '<div xmlns="http://www.w3.org/1999/xhtml">' + "Amy Smith, seen in clinic. " * 100 + "</div>"
    pid = await create(client, patient(text={"status": "generated", "div": narrative}))
    plain = await client.get(f"/fhir/Patient?_id={pid}", headers={"Accept-Encoding": "identity"})
    zipped = await client.get(f"/fhir/Patient?_id={pid}", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert (zipped.headers["content-encoding"], zipped.headers["vary"]) == ("gzip", "Accept-Encoding")
    assert int(zipped.headers["content-length"]) < len(plain.content) // 3
    assert zipped.json()["entry"] == plain.json()["entry"]
    small = await client.get(f"/fhir/Patient/{pid}?_summary=true", headers={"Accept-Encoding": "gzip"})
    assert len(small.content) < MINIMUM_SIZE and "content-encoding" not in small.headers
    refused = await client.get(f"/fhir/Patient?_id={pid}", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers


def _gzip_speed_flag(body: bytes) -> int:
    """The XFL byte of a gzip member's header (RFC 1952 section 2.3.1): 4 = compressed with the fastest
    algorithm (level 1), 0 = a level between, 2 = the best (level 9)."""
    assert body[:2] == b"\x1f\x8b"
    return body[8]


async def test_web_pages_are_gzipped_at_the_fastest_level_fhir_at_the_default(client: httpx.AsyncClient) -> None:
    narrative = '<div xmlns="http://www.w3.org/1999/xhtml">' + "Amy Smith, seen in clinic. " * 100 + "</div>"
    pid = await create(client, patient(text={"status": "generated", "div": narrative}))
    headers = {"Accept-Encoding": "gzip"}
    raw = {}
    for path in (f"/fhir/Patient?_id={pid}", "/app/static/live.js"):  # a page's asset is served under /app too
        async with client.stream("GET", path, headers=headers) as r:
            assert r.headers["content-encoding"] == "gzip"
            raw[path] = b"".join([chunk async for chunk in r.aiter_raw()])
    assert [_gzip_speed_flag(body) for body in raw.values()] == [0, 4]
    plain = await client.get("/app/static/live.js", headers={"Accept-Encoding": "identity"})
    assert gzip.decompress(raw["/app/static/live.js"]) == plain.content


def test_accept_encoding_values() -> None:
    assert [accepts_gzip(v) for v in (b"gzip", b"deflate, gzip;q=0.5", b"*", b"GZIP", b"x-gzip", b"br")] == [
        True, True, True, True, True, False]
    assert [accepts_gzip(v) for v in (b"gzip;q=0", b"gzip; q=0.0", b"gzip;q=x", b"")] == [False, False, False, False]


# -- _summary -------------------------------------------------------------------------------------
def _full_patient() -> dict[str, object]:
    return patient(
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Amy Smith</div>'},
        gender="female",
        contact=[{"name": {"family": "Smith"}, "telecom": [{"system": "phone", "value": "01632 960000"}]}],
        maritalStatus={"text": "Never married"},
    )


async def test_summary_on_search_and_read(client: httpx.AsyncClient) -> None:
    other = await create(client, patient("9990000026", family="Other"))
    pid = await create(client, _full_patient() | {"link": [{"other": {"reference": f"Patient/{other}"},
                                                              "type": "seealso"}]})
    stored = (await client.get(f"/fhir/Patient/{pid}")).json()
    meta = {"versionId": "1", "lastUpdated": instant(2), "tag": [SUBSETTED]}
    # R4 Patient: text, contact and maritalStatus are not summary elements; link (and link.other/type) are
    expected = {
        "true": {k: v for k, v in stored.items() if k not in ("text", "contact", "maritalStatus")} | {"meta": meta},
        "text": {"resourceType": "Patient", "id": pid, "meta": meta, "text": stored["text"]},
        "data": {k: v for k, v in stored.items() if k != "text"} | {"meta": meta},
        "false": stored,
    }
    for mode, want in expected.items():
        read = await client.get(f"/fhir/Patient/{pid}?_summary={mode}")
        assert (read.status_code, read.json(), read.headers["etag"]) == (200, want, 'W/"1"'), mode
        found = (await client.get(f"/fhir/Patient?_id={pid}&_summary={mode}")).json()
        assert [e["resource"] for e in found["entry"]] == [want], mode
        vread = await client.get(f"/fhir/Patient/{pid}/_history/1?_summary={mode}")
        assert vread.json() == want, mode
    assert (await client.get("/fhir/Patient?_summary=count")).json()["total"] == 2


async def test_summary_keeps_what_a_backbone_marks_summary(client: httpx.AsyncClient) -> None:
    """Within a backbone element kept, only its own summary elements: R4 Encounter.participant is a
    summary element, its `type` too, its `period` not; Encounter.statusHistory is not."""
    pid = await create(client, patient())
    role = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND"}]}
    enc = {"resourceType": "Encounter", "status": "finished",
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
           "subject": {"reference": f"Patient/{pid}"},
           "participant": [{"type": [role], "period": {"start": "2026-01-05"}}],
           "statusHistory": [{"status": "arrived", "period": {"start": "2026-01-05"}}]}
    eid = await create(client, enc)
    got = (await client.get(f"/fhir/Encounter/{eid}?_summary=true")).json()
    assert {k: v for k, v in got.items() if k not in ("id", "meta")} == {
        "resourceType": "Encounter", "status": "finished", "class": enc["class"], "subject": enc["subject"],
        "participant": [{"type": [role]}],
    }
    assert got["meta"]["tag"] == [SUBSETTED]


async def test_summary_refusals(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    for query, text in (("_summary=count", "count"), ("_summary=yes", "yes"),
                        ("_summary=true&_summary=data", "true,data")):
        r = await client.get(f"/fhir/Patient/{pid}?{query}")
        assert (r.status_code, r.json()) == (400, outcome(
            "invalid", f"SF-0411: _summary={text} is not supported on a read (supported: true, text, data, false)",
            ["_summary"])), query
    r = await client.get("/fhir/Patient?_summary=yes")
    assert (r.status_code, r.json()) == (400, outcome(
        "invalid", "SF-0411: _summary=yes is not supported (supported: true, text, data, count, false)", ["_summary"]))


# -- fhirVersion ----------------------------------------------------------------------------------
async def test_fhir_version_in_accept(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    for accept in ("application/fhir+json; fhirVersion=4.0", "application/fhir+json;fhirVersion=4.0.1",
                   "application/fhir+json; fhirVersion=3.0, application/fhir+json; fhirVersion=4.0",
                   "application/fhir+json; charset=utf-8"):
        assert (await client.get(f"/fhir/Patient/{pid}", headers={"Accept": accept})).status_code == 200, accept
    for accept in ("application/fhir+json; fhirVersion=3.0", "application/json; fhirVersion=5.0; q=0.9"):
        r = await client.get(f"/fhir/Patient/{pid}", headers={"Accept": accept})
        assert (r.status_code, r.json()) == (406, outcome(
            "not-supported", f"SF-0030: Cannot produce '{accept}': this server speaks FHIR R4 only (fhirVersion=4.0)"))
    r = await client.get(f"/fhir/Patient/{pid}", params={"_format": "application/fhir+json; fhirVersion=1.0"})
    assert (r.status_code, r.json()) == (406, outcome(
        "not-supported", "SF-0030: _format=application/fhir+json; fhirVersion=1.0 asks for another FHIR version; "
        "this server speaks FHIR R4 only (fhirVersion=4.0)", ["_format"]))


async def test_fhir_version_in_content_type(client: httpx.AsyncClient) -> None:
    body = orjson.dumps(patient())
    r = await client.post("/fhir/Patient", content=body,
                          headers={"Content-Type": "application/fhir+json; fhirVersion=3.0"})
    assert (r.status_code, r.json()) == (415, outcome(
        "not-supported", "SF-0030: Content-Type 'application/fhir+json; fhirVersion=3.0' names another FHIR "
        "version; this server speaks FHIR R4 only (fhirVersion=4.0)"))
    assert await count(client, "Patient") == 0
    r = await client.post("/fhir/Patient", content=body,
                          headers={"Content-Type": "application/fhir+json; charset=utf-8; fhirVersion=4.0"})
    assert r.status_code == 201
