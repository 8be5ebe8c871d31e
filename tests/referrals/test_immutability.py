"""A stored referral copy never changes (contract section 5): only `status` may go to entered-in-error
with a reason; DocumentReference, Binary and the referral Communication are never deleted; a correction is
a new copy that replaces the old one, which the server marks superseded in the same transaction."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.context import AppContext
from tests.referrals.support import (
    CS,
    EXT,
    TEXT,
    World,
    attachment,
    binary,
    body,
    bundle,
    copy,
    created,
    entry,
    oo,
    reason,
    referral,
    stored_counts,
)

IMMUTABLE = ("is part of a referral copy and cannot be changed: only status may change (to entered-in-error, "
             "with a reason); store a correction as a new DocumentReference whose relatesTo replaces the old one. "
             "Changed: ")


async def read(client: httpx.AsyncClient, ref: str) -> dict[str, Any]:
    r = await client.get(f"/fhir/{ref}", headers={"Accept": "application/fhir+json"})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def put_refused(client: httpx.AsyncClient, ctx: AppContext, ref: str, resource: dict[str, Any],
                      expected: dict[str, Any]) -> None:
    before = await stored_counts(ctx)
    r = await client.put(f"/fhir/{ref}", json=resource)
    assert (r.status_code, r.json()) == (422, expected)
    assert await stored_counts(ctx) == before


async def test_only_status_of_a_copy_may_change(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    ref = await created(rclient, copy(w.child))
    stored = await read(rclient, ref)
    await put_refused(rclient, clean_ctx, ref, {**stored, "description": "edited"}, oo(
        "business-rule", f"SF-0914: {ref} {IMMUTABLE}description", ["DocumentReference.description"]))
    edited = {**stored, "status": "entered-in-error", "extension": [reason()],
              "content": [{"attachment": attachment(b"other text")}], "subject": {"reference": "Patient/other"}}
    await put_refused(rclient, clean_ctx, ref, edited, oo(
        "business-rule", f"SF-0914: {ref} {IMMUTABLE}content, subject",
        ["DocumentReference.content", "DocumentReference.subject"]))
    await put_refused(rclient, clean_ctx, ref, {**stored, "status": "entered-in-error"}, oo(
        "required", f"SF-0915: Setting {ref} to entered-in-error needs the status-reason extension "
                    f"({EXT}status-reason)", ["DocumentReference.extension"]))
    await put_refused(rclient, clean_ctx, ref, {**stored, "status": "superseded"}, oo(
        "business-rule", f"SF-0916: The status of {ref} may change only to entered-in-error (it is 'current'); "
                         "'superseded' is set by the server when a correction replaces the copy",
        ["DocumentReference.status"]))
    await put_refused(rclient, clean_ctx, ref, {**stored, "extension": [reason()]}, oo(
        "business-rule", f"SF-0914: {ref} {IMMUTABLE}extension", ["DocumentReference.extension"]))
    r = await rclient.patch(f"/fhir/{ref}", json=[{"op": "replace", "path": "/date", "value": "2026-01-01T00:00:00Z"}],
                            headers={"Content-Type": "application/json-patch+json"})
    assert (r.status_code, r.json()) == (422, oo("business-rule", f"SF-0914: {ref} {IMMUTABLE}date",
                                                 ["DocumentReference.date"]))
    r = await rclient.put(f"/fhir/{ref}", json={**stored, "status": "entered-in-error", "extension": [reason()]})
    assert (r.status_code, r.json()["meta"]["versionId"], r.json()["status"]) == (200, "2", "entered-in-error")
    back = await read(rclient, ref)
    await put_refused(rclient, clean_ctx, ref, {**back, "status": "current"}, oo(
        "business-rule", f"SF-0916: The status of {ref} may change only to entered-in-error (it is "
                         "'entered-in-error'); 'superseded' is set by the server when a correction replaces the copy",
        ["DocumentReference.status"]))


async def test_reason_must_come_from_the_code_system(rclient: httpx.AsyncClient) -> None:
    w = await World.make(rclient)
    ref = await created(rclient, copy(w.child))
    stored = await read(rclient, ref)
    bad = {**reason(), "valueCodeableConcept": {"coding": [{"system": CS + "status-reason", "code": "bogus"}]}}
    r = await rclient.put(f"/fhir/{ref}", json={**stored, "status": "entered-in-error", "extension": [bad]})
    assert r.status_code == 422
    assert [(i["code"], i["diagnostics"][:8]) for i in r.json()["issue"]] == [("code-invalid", "SF-0605:")]


@pytest.mark.parametrize("rtype", ["DocumentReference", "Binary"])
async def test_copies_and_binaries_are_never_deleted(rclient: httpx.AsyncClient, rtype: str) -> None:
    w = await World.make(rclient)
    ref = await created(rclient, copy(w.child) if rtype == "DocumentReference" else binary())
    r = await rclient.delete(f"/fhir/{ref}")
    assert (r.status_code, r.json()) == (405, oo(
        "not-supported", f"SF-0405: {rtype} resources are never deleted; change their status instead"))
    assert (await read(rclient, ref))["meta"]["versionId"] == "1"


async def test_binary_is_immutable(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    ref = await created(rclient, binary())
    stored = await read(rclient, ref)
    await put_refused(rclient, clean_ctx, ref, {**stored, "data": "eA=="}, oo(
        "business-rule", f"SF-0913: {ref} is immutable: a stored document cannot be changed; store a corrected copy "
                         "as a new DocumentReference (and Binary) that replaces the old one", ["Binary"]))
    r = await rclient.put(f"/fhir/{ref}", json=stored)  # the same content is no change at all
    assert (r.status_code, r.json()["meta"]["versionId"]) == (200, "1")


async def test_referral_communication_changes_only_to_entered_in_error(rclient: httpx.AsyncClient,
                                                                      clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    doc = await created(rclient, copy(w.child))
    ref = await created(rclient, referral(w.child, doc, w.mash, w.hv))
    stored = await read(rclient, ref)
    changed = ("is part of a referral copy and cannot be changed: only status may change (to entered-in-error, with "
               "a reason); store a correction as a new DocumentReference whose relatesTo replaces the old one. "
               "Changed: ")
    await put_refused(rclient, clean_ctx, ref, {**stored, "recipient": [{"reference": w.provider}]}, oo(
        "business-rule", f"SF-0925: {ref} {changed}recipient", ["Communication.recipient"]))
    await put_refused(rclient, clean_ctx, ref, {**stored, "status": "entered-in-error"}, oo(
        "required", f"SF-0926: Setting {ref} to entered-in-error needs a statusReason", ["Communication.statusReason"]))
    await put_refused(rclient, clean_ctx, ref, {**stored, "status": "stopped"}, oo(
        "business-rule", f"SF-0927: The status of {ref} may change only to entered-in-error (it is 'completed')",
        ["Communication.status"]))
    r = await rclient.delete(f"/fhir/{ref}")
    assert (r.status_code, r.json()) == (405, oo(
        "not-supported", f"SF-0928: {ref} is part of a referral copy and is never deleted; set its status to "
                         "entered-in-error (with a statusReason) instead"))
    r = await rclient.put(f"/fhir/{ref}", json={**stored, "status": "entered-in-error",
                                                 "statusReason": {"text": "sent to the wrong MASH"}})
    assert (r.status_code, r.json()["meta"]["versionId"]) == (200, "2")


async def test_correction_chain(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    old = await created(rclient, copy(w.child))
    fixed = copy(w.child, att=attachment(TEXT + b"Addendum.\n"), relatesTo=[{"code": "replaces",
                                                                            "target": {"reference": old}}])
    # the correction and its Communication in one transaction; the old copy becomes superseded in it
    r = await rclient.post("/fhir", json=bundle(entry(fixed, "urn:uuid:new"),
                                                entry(referral(w.child, "urn:uuid:new", w.mash))))
    assert r.status_code == 200, r.text
    new = f"DocumentReference/{r.json()['entry'][0]['resource']['id']}"
    superseded = await read(rclient, old)
    assert (superseded["meta"]["versionId"], superseded["status"], superseded["extension"]) == ("2", "superseded", [
        {"url": EXT + "status-reason", "valueCodeableConcept": {"coding": [
            {"system": CS + "status-reason", "code": "superseded", "display": "Superseded"}]}}])
    assert body(superseded) == {**body(await read_version(rclient, old, 1)), "status": "superseded",
                                "extension": superseded["extension"]}
    found = (await rclient.get("/fhir/DocumentReference", params={"relatesto": old})).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [new.partition("/")[2]]
    # a superseded copy cannot be replaced again, nor by a copy about someone else, nor can a stranger be
    again = {**fixed, "relatesTo": [{"code": "replaces", "target": {"reference": old}}]}
    before = await stored_counts(clean_ctx)
    r = await rclient.post("/fhir/DocumentReference", json=again)
    assert (r.status_code, r.json()) == (422, oo(
        "business-rule", f"SF-0919: {old} is superseded and cannot be replaced; only a current copy can",
        ["DocumentReference.relatesTo[0].target"]))
    other_child = await created(rclient, {"resourceType": "Patient", "birthDate": "2021-01-01"})
    r = await rclient.post("/fhir/DocumentReference", json={**copy(other_child), "relatesTo": [
        {"code": "replaces", "target": {"reference": new}}]})
    assert (r.status_code, r.json()) == (422, oo(
        "business-rule", f"SF-0920: {new} is about another subject; a correction replaces a copy about the same child",
        ["DocumentReference.subject"]))
    r = await rclient.post("/fhir/DocumentReference", json={**copy(w.child), "relatesTo": [
        {"code": "replaces", "target": {"reference": w.child}}]})
    assert (r.status_code, r.json()) == (422, oo(
        "business-rule", f"SF-0918: relatesTo.target '{w.child}' is not a stored referral copy",
        ["DocumentReference.relatesTo[0].target"]))
    assert await stored_counts(clean_ctx) == {**before, "Patient": (before["Patient"][0] + 1,
                                                                    before["Patient"][1] + 1)}


async def read_version(client: httpx.AsyncClient, ref: str, version: int) -> dict[str, Any]:
    return await read(client, f"{ref}/_history/{version}")


async def test_another_document_cannot_become_a_copy(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    plain = copy(w.child)
    del plain["type"]
    ref = await created(rclient, plain)
    stored = await read(rclient, ref)
    await put_refused(rclient, clean_ctx, ref, {**stored, "type": copy(w.child)["type"]}, oo(
        "business-rule", f"SF-0938: {ref} is not a referral copy and cannot become one; store the referral copy as "
                         "a new DocumentReference", ["DocumentReference.type"]))
