"""Bad referral copies (issue "Bad input"): each answered with a precise 4xx OperationOutcome, nothing
stored, and no half-stored referral when the copy comes as one transaction Bundle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.context import AppContext
from tests.referrals.support import (
    PDF,
    TEXT,
    TEXT_HASH,
    World,
    attachment,
    binary,
    bundle,
    copy,
    created,
    entry,
    oo,
    referral,
    setting,
    stored_counts,
)

ATT = "DocumentReference.content[0].attachment"
WRONG_HASH = "2jmj7l5rSw0yVb/vlWAYkK/YBwk="  # the SHA-1 of no bytes at all


async def refused(client: httpx.AsyncClient, ctx: AppContext, url: str, resource: dict[str, Any], status: int,
                  expected: dict[str, Any]) -> None:
    before = await stored_counts(ctx)
    r = await client.post(url, json=resource)
    assert (r.status_code, r.json()) == (status, expected)
    assert await stored_counts(ctx) == before


Case = Callable[[World], tuple[dict[str, Any], int, dict[str, Any]]]
COPY_CASES: dict[str, Case] = {
    "hash mismatch": lambda w: (copy(w.child, att=attachment(hash=WRONG_HASH)), 422, oo(
        "business-rule", f"SF-0908: attachment.hash '{WRONG_HASH}' is not the SHA-1 of the document (base64 "
                         f"'{TEXT_HASH}')", [f"{ATT}.hash"])),
    "size mismatch": lambda w: (copy(w.child, att=attachment(size=65)), 422, oo(
        "business-rule", "SF-0907: attachment.size is 65 but the document has 66 bytes", [f"{ATT}.size"])),
    "content type not allowed": lambda w: (copy(w.child, att=attachment(content_type="image/png")), 422, oo(
        "code-invalid", "SF-0901: Content type 'image/png' is not allowed for a referral document (allowed: "
                        "application/pdf, text/html, text/plain)", [f"{ATT}.contentType"])),
    "missing subject": lambda w: ({k: v for k, v in copy(w.child).items() if k != "subject"}, 422, oo(
        "required", "SF-0601: DocumentReference.subject: minimum required = 1, but only found 0 (profile "
                    "https://fhir.safeflag.example/StructureDefinition/referral-copy-document-reference)",
        ["DocumentReference.subject"])),
    "missing attachment": lambda w: ({**copy(w.child), "content": [{"format": {"code": "urn:x"}}]}, 400, oo(
        "required", "SF-0113: Missing required element DocumentReference.content[0].attachment",
        ["DocumentReference.content[0].attachment"])),
    "no document at all": lambda w: (copy(w.child, att=attachment(None, title="Referral")), 422, oo(
        "required", "SF-0903: A referral copy must hold the document: attachment.data, or attachment.url naming "
                    "a Binary on this server", [ATT])),
    "data and url": lambda w: (copy(w.child, att=attachment(url="Binary/b1")), 422, oo(
        "business-rule", "SF-0902: A referral copy holds its document once: attachment.data or attachment.url (a "
                         "Binary on this server), not both", [ATT])),
    "document elsewhere": lambda w: (copy(w.child, att=attachment(None, url="https://portal.example/r/1")), 422, oo(
        "business-rule", "SF-0904: attachment.url 'https://portal.example/r/1' is not a Binary on this server; a "
                         "referral copy keeps the document here (Binary/<id> or inline data)", [f"{ATT}.url"])),
    "binary not stored": lambda w: (copy(w.child, att=attachment(None, url="Binary/nope")), 422, oo(
        "not-found", "SF-0905: Binary/nope is not stored; store the Binary first (in a transaction Bundle, put its "
                     "entry before the DocumentReference)", [f"{ATT}.url"])),
    "created superseded": lambda w: (copy(w.child, status="superseded"), 422, oo(
        "business-rule", "SF-0917: A new referral copy must have status 'current', not 'superseded'",
        ["DocumentReference.status"])),
}


@pytest.mark.parametrize("case", list(COPY_CASES))
async def test_bad_copy_is_refused_and_nothing_stored(rclient: httpx.AsyncClient, clean_ctx: AppContext,
                                                      case: str) -> None:
    w = await World.make(rclient)
    resource, status, expected = COPY_CASES[case](w)
    await refused(rclient, clean_ctx, "/fhir/DocumentReference", resource, status, expected)


BINARY_CASES: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {
    "content type not allowed": (binary(content_type="application/zip"), 422, oo(
        "code-invalid", "SF-0901: Content type 'application/zip' is not allowed for a referral document (allowed: "
                        "application/pdf, text/html, text/plain)", ["Binary.contentType"])),
    "no data": ({"resourceType": "Binary", "contentType": "application/pdf"}, 422, oo(
        "required", "SF-0911: A Binary holds a referral document: Binary.data is required", ["Binary.data"])),
    "security context not a document": (binary(securityContext={"reference": "Patient/p1"}), 422, oo(
        "business-rule", "SF-0912: Binary.securityContext must be the DocumentReference (on this server) that "
                         "holds this document", ["Binary.securityContext"])),
}


@pytest.mark.parametrize("case", list(BINARY_CASES))
async def test_bad_binary_is_refused(rclient: httpx.AsyncClient, clean_ctx: AppContext, case: str) -> None:
    resource, status, expected = BINARY_CASES[case]
    await refused(rclient, clean_ctx, "/fhir/Binary", resource, status, expected)


async def test_oversize_documents_are_413(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    old = await setting(clean_ctx, max_document_bytes=64)
    try:
        await refused(rclient, clean_ctx, "/fhir/DocumentReference", copy(w.child), 413, oo(
            "too-costly", "SF-0909: The document is 66 bytes; referral documents may be at most 64 bytes "
                          "(SAFEFLAG_MAX_DOCUMENT_BYTES)", [f"{ATT}.data"]))
        await refused(rclient, clean_ctx, "/fhir/Binary", binary(b"x" * 3000, "text/plain"), 413, oo(
            "too-costly", "SF-0909: The document is about 3000 bytes; referral documents may be at most 64 bytes "
                          "(SAFEFLAG_MAX_DOCUMENT_BYTES)", ["Binary.data"]))
    finally:
        await setting(clean_ctx, **old)


async def test_attachment_type_must_match_its_binary(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    bin_ref = await created(rclient, binary(PDF))
    await refused(rclient, clean_ctx, "/fhir/DocumentReference", copy(w.child, att=attachment(None, url=bin_ref)),
                  422, oo("business-rule", f"SF-0906: attachment.contentType 'text/plain' differs from the "
                                           f"contentType 'application/pdf' of {bin_ref}", [f"{ATT}.contentType"]))


async def test_a_binary_belongs_to_one_copy(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    bin_ref = await created(rclient, binary(TEXT, "text/plain"))
    first = await created(rclient, copy(w.child, att=attachment(None, url=bin_ref)))
    await refused(rclient, clean_ctx, "/fhir/DocumentReference", copy(w.child, att=attachment(None, url=bin_ref)),
                  422, oo("business-rule", f"SF-0929: {bin_ref} belongs to {first} (its securityContext); each "
                                           "referral copy needs its own Binary", [f"{ATT}.url"]))
    # nor may a new Binary claim a stored copy that does not hold it
    await refused(rclient, clean_ctx, "/fhir/Binary", binary(securityContext={"reference": first}), 422, oo(
        "business-rule", f"SF-0912: Binary.securityContext names {first}, which does not hold this Binary",
        ["Binary.securityContext"]))


COMM_CASES: dict[str, Callable[[World, str, str], tuple[dict[str, Any], dict[str, Any]]]] = {
    "no recipient": lambda w, doc, _: (referral(w.child, doc, None), oo(
        "required", "SF-0923: A mash-referral Communication's recipient is the MASH Organization",
        ["Communication.recipient"])),
    "no document": lambda w, doc, _: ({**referral(w.child, doc, w.mash), "payload": [{"contentString": "see portal"}]},
                                      oo("required", "SF-0921: A mash-referral Communication points at its referral "
                                                     "copy: payload.contentReference = the DocumentReference",
                                         ["Communication.payload"])),
    "not a copy": lambda w, _, other: (referral(w.child, other, w.mash), oo(
        "business-rule", f"SF-0922: payload.contentReference '{other}' is not a stored referral copy (store the "
                         "DocumentReference first; in a transaction Bundle, put its entry before the Communication)",
        ["Communication.payload[0].contentReference"])),
    "another child": lambda w, doc, _: (referral(w.child.replace("Patient/", "Patient/x"), doc, w.mash), oo(
        "business-rule", f"SF-0924: Communication.subject differs from the subject of {doc}",
        ["Communication.subject"])),
}


@pytest.mark.parametrize("case", list(COMM_CASES))
async def test_bad_referral_communication(rclient: httpx.AsyncClient, clean_ctx: AppContext, case: str) -> None:
    w = await World.make(rclient)
    doc = await created(rclient, copy(w.child))
    other = await created(rclient, {"resourceType": "DocumentReference", "status": "current",
                                    "content": [{"attachment": {"contentType": "text/plain", "data": "eA=="}}]})
    resource, expected = COMM_CASES[case](w, doc, other)
    await refused(rclient, clean_ctx, "/fhir/Communication", resource, 422, expected)


def _tx(w: World, *, doc_att: dict[str, Any] | None = None, mash: str | None = "", order: tuple[int, ...] = (0, 1, 2),
        ) -> dict[str, Any]:
    entries = [
        entry(binary(securityContext={"reference": "urn:uuid:doc"}), "urn:uuid:bin"),
        entry(copy(w.child, att=doc_att or {"contentType": "application/pdf", "url": "urn:uuid:bin"}), "urn:uuid:doc"),
        entry(referral(w.child, "urn:uuid:doc", w.mash if mash == "" else mash), "urn:uuid:comm"),
    ]
    return bundle(*[entries[i] for i in order])


async def test_failed_transaction_stores_no_part_of_the_referral(rclient: httpx.AsyncClient,
                                                                 clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    bad_hash = {"contentType": "application/pdf", "url": "urn:uuid:bin", "hash": WRONG_HASH}
    await refused(rclient, clean_ctx, "/fhir", _tx(w, doc_att=bad_hash), 422, oo(
        "business-rule", f"SF-0908: Bundle.entry[1] (POST DocumentReference): attachment.hash '{WRONG_HASH}' is not "
                         "the SHA-1 of the document (base64 'D+yIfpHNKC2YXmgMespuUEiBUBo=')",
        ["Bundle.entry[1].resource.content[0].attachment.hash"]))
    await refused(rclient, clean_ctx, "/fhir", _tx(w, mash=None), 422, oo(
        "required", "SF-0923: Bundle.entry[2] (POST Communication): A mash-referral Communication's recipient is "
                    "the MASH Organization", ["Bundle.entry[2].resource.recipient"]))


async def test_transaction_order_matters_and_is_explained(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    """The copy is checked against its Binary's bytes, so the Binary entry comes first (documented)."""
    w = await World.make(rclient)
    before = await stored_counts(clean_ctx)
    r = await rclient.post("/fhir", json=_tx(w, order=(1, 0, 2)))
    issue = r.json()["issue"][0]
    assert (r.status_code, issue["code"], issue["expression"]) == (
        422, "not-found", ["Bundle.entry[0].resource.content[0].attachment.url"])
    assert issue["diagnostics"].startswith("SF-0905: Bundle.entry[0] (POST DocumentReference): Binary/")
    assert issue["diagnostics"].endswith(" is not stored; store the Binary first (in a transaction Bundle, put "
                                         "its entry before the DocumentReference)")
    assert await stored_counts(clean_ctx) == before
