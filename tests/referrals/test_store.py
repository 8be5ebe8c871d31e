"""Storing a MASH referral copy (contract section 5): one transaction Bundle or separate requests; the
server fills in size, hash, date and custodian, links the Binary to its DocumentReference, and serves
the Binary in its native form."""

from __future__ import annotations

import base64

import httpx

from app.context import AppContext
from tests.conftest import FHIR
from tests.referrals.support import (
    COMM_CATEGORY,
    DOC_TYPE,
    PDF,
    TEXT,
    TEXT_B64,
    TEXT_HASH,
    TEXT_SIZE,
    World,
    binary,
    body,
    bundle,
    copy,
    created,
    entry,
    oo,
    referral,
    stored_counts,
    token,
)
from tests.support.fhir_data import instant

PDF_B64 = base64.b64encode(PDF).decode()
PDF_SIZE, PDF_HASH = 45, "D+yIfpHNKC2YXmgMespuUEiBUBo="


async def test_one_transaction_stores_binary_copy_and_communication(rclient: httpx.AsyncClient) -> None:
    w = await World.make(rclient)
    tx = bundle(
        entry(binary(securityContext={"reference": "urn:uuid:doc"}), "urn:uuid:bin"),
        entry(copy(w.child, author=w.hv, custodian=w.provider,
                   att={"contentType": "application/pdf", "url": "urn:uuid:bin", "title": "Referral"}), "urn:uuid:doc"),
        entry(referral(w.child, "urn:uuid:doc", w.mash, w.hv), "urn:uuid:comm"),
    )
    r = await rclient.post("/fhir", json=tx)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created"] * 3
    bin_id, doc_id, comm_id = (e["resource"]["id"] for e in entries)
    doc = (await rclient.get(f"/fhir/DocumentReference/{doc_id}")).json()
    assert body(doc) == {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": DOC_TYPE, "code": "mash-referral", "display": "MASH referral copy"}]},
        "subject": {"reference": w.child},
        "date": "2026-01-05T10:00:00Z",
        "author": [{"reference": w.hv}],
        "custodian": {"reference": w.provider},
        "content": [{"attachment": {"contentType": "application/pdf", "url": f"Binary/{bin_id}",
                                    "title": "Referral", "size": PDF_SIZE, "hash": PDF_HASH}}],
    }
    stored_binary = (await rclient.get(f"/fhir/Binary/{bin_id}", headers={"Accept": "application/fhir+json"})).json()
    assert stored_binary["meta"]["versionId"] == "1"  # the client named its securityContext: nothing to add
    assert body(stored_binary) == {"resourceType": "Binary", "contentType": "application/pdf", "data": PDF_B64,
                                   "securityContext": {"reference": f"DocumentReference/{doc_id}"}}
    comm = (await rclient.get(f"/fhir/Communication/{comm_id}")).json()
    assert body(comm) == {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": "mash-referral"}]}],
        "subject": {"reference": w.child},
        "sent": "2026-01-05T10:00:00Z",
        "payload": [{"contentReference": {"reference": f"DocumentReference/{doc_id}"}}],
        "recipient": [{"reference": w.mash}],
        "sender": {"reference": w.hv},
    }


async def test_separate_requests_link_the_binary_to_its_copy(rclient: httpx.AsyncClient) -> None:
    w = await World.make(rclient)
    bin_ref = await created(rclient, binary(TEXT, "text/plain"))
    doc = copy(w.child, att={"contentType": "text/plain; charset=utf-8", "url": bin_ref, "size": TEXT_SIZE,
                             "hash": TEXT_HASH})
    r = await rclient.post("/fhir/DocumentReference", json=doc)
    assert r.status_code == 201, r.text
    doc_ref = f"DocumentReference/{r.json()['id']}"
    assert r.json()["content"] == doc["content"]  # both supplied and right: kept as sent
    linked = (await rclient.get(f"/fhir/{bin_ref}", headers={"Accept": "application/fhir+json"})).json()
    assert (linked["meta"]["versionId"], linked["securityContext"]) == ("2", {"reference": doc_ref})
    comm = referral(w.child, doc_ref, w.mash, w.hv)
    del comm["sent"]
    r = await rclient.post("/fhir/Communication", json=comm)
    assert r.status_code == 201, r.text
    # defaulted to the time it is stored (the clock's 9th tick; the Communication is stamped at the 10th)
    assert (r.json()["sent"], r.json()["meta"]["lastUpdated"]) == (instant(9), instant(10))


async def test_inline_copy_gets_size_hash_date_custodian_and_label(rclient: httpx.AsyncClient,
                                                                  clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    doc = copy(w.child, author=w.hv, securityLabel=[{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}])
    del doc["date"]
    headers = token(clean_ctx, "health-visitor", org=w.provider, fhir_user=w.hv)
    r = await rclient.post("/fhir/DocumentReference", json=doc, headers=headers)
    assert r.status_code == 201, r.text
    stored = r.json()
    assert stored["content"] == [{"attachment": {"contentType": "text/plain", "data": TEXT_B64, "size": TEXT_SIZE,
                                                 "hash": TEXT_HASH}}]
    assert stored["custodian"] == {"reference": w.provider}  # the writer's organisation
    assert (stored["date"], stored["meta"]["lastUpdated"]) == (instant(6), instant(7))
    assert stored["meta"]["security"] == [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                           "code": "R"}]


async def test_binary_read_natively_or_as_a_resource(rclient: httpx.AsyncClient) -> None:
    bin_ref = await created(rclient, binary(TEXT, "text/plain"))
    for accept in ("text/plain", "*/*", "application/pdf"):
        raw = await rclient.get(f"/fhir/{bin_ref}", headers={"Accept": accept})
        assert (raw.status_code, raw.content, raw.headers["content-type"]) == (200, TEXT, "text/plain; charset=utf-8")
        assert (raw.headers["etag"], raw.headers["content-security-policy"]) == ('W/"1"', "sandbox")
    for headers, query in (({"Accept": "application/fhir+json"}, ""), ({"Accept": "application/json"}, ""),
                           ({"Accept": "text/plain"}, "?_format=json")):
        res = await rclient.get(f"/fhir/{bin_ref}{query}", headers=headers)
        assert (res.status_code, res.headers["content-type"]) == (200, "application/fhir+json; charset=utf-8")
        assert body(res.json()) == {"resourceType": "Binary", "contentType": "text/plain", "data": TEXT_B64}
    unchanged = await rclient.get(f"/fhir/{bin_ref}", headers={"Accept": "text/plain", "If-None-Match": 'W/"1"'})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    xml = await rclient.get(f"/fhir/{bin_ref}", headers={"Accept": "application/fhir+xml"})
    assert (xml.status_code, xml.json()) == (406, oo(
        "not-supported", "SF-0010: Cannot produce 'application/fhir+xml'; this server speaks application/fhir+json"))
    missing = await rclient.get("/fhir/Binary/nope", headers={"Accept": "application/pdf"})
    assert (missing.status_code, missing.json()) == (404, oo("not-found", "SF-0301: Binary/nope is not known", ["id"]))


async def test_a_copy_needs_a_token(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    before = await stored_counts(clean_ctx)
    r = await rclient.post("/fhir/Binary", json=binary(), headers={"Authorization": ""})
    assert r.status_code == 401
    r = await rclient.get(f"{FHIR}/Binary/x", headers={"Authorization": "", "Accept": "application/pdf"})
    assert r.status_code == 401
    assert await stored_counts(clean_ctx) == before

