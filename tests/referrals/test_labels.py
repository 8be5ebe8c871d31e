"""Restricted referral copies (contract section 3): the DocumentReference's restricted label is honoured on
every read, and its Binary takes the same access through `Binary.securityContext`
(app/security/binary_policy.py, https://hl7.org/fhir/R4/binary.html#security)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.context import AppContext
from app.security.binary_policy import binary_visibility, security_context
from app.security.decision import SecurityContext
from app.security.policy import Visibility, decide
from app.security.principal import Principal
from app.security.scopes import ScopeSet
from tests.referrals.support import World, attachment, binary, copy, created, oo, token

RESTRICTED = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}]
A, B, C, LA = "Organization/a", "Organization/b", "Organization/c", "Organization/la"


async def test_restricted_copy_over_http(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    hospital = await created(rclient, {"resourceType": "Organization", "name": "Hospital"})
    hv = token(clean_ctx, "health-visitor", org=w.provider, fhir_user=w.hv)
    bin_ref = await created(rclient, binary())
    r = await rclient.post("/fhir/DocumentReference", headers=hv, json=copy(
        w.child, author=w.hv, custodian=hospital, securityLabel=RESTRICTED,
        att=attachment(None, "application/pdf", url=bin_ref)))
    assert r.status_code == 201, r.text
    doc = f"DocumentReference/{r.json()['id']}"
    assert (await rclient.get(f"/fhir/{doc}", headers=hv)).status_code == 200  # the authoring organisation
    lead = token(clean_ctx, "safeguarding-lead", org="Organization/elsewhere")
    assert (await rclient.get(f"/fhir/{doc}", headers=lead)).status_code == 200  # leads see restricted records
    ed = token(clean_ctx, "ed-clinician", org=hospital)  # named as custodian, but did not write it
    r = await rclient.get(f"/fhir/{doc}", headers=ed)
    assert (r.status_code, r.json()) == (403, oo(
        "forbidden", "SF-0802: This DocumentReference is restricted; only safeguarding leads and the organisation "
                     "that wrote it may see it"))
    found = (await rclient.get("/fhir/DocumentReference", params={"patient": w.child}, headers=ed)).json()
    assert [e["search"]["mode"] for e in found["entry"]] == ["outcome"]
    assert found["entry"][0]["resource"]["issue"][0]["diagnostics"].startswith(
        "SF-0820: Restricted records about the patient(s) of this search were withheld from this result.")
    queue = (await rclient.get("/fhir/DocumentReference/$qa-queue", headers=ed)).json()
    # the queue withholds it too; it names no patient and shows no copy, so it has no patient to speak of
    assert (queue["total"], queue.get("entry")) == (0, None)


def who(role: str, org: str | None, shared: frozenset[str] = frozenset()) -> Principal:
    return Principal(sub="u", role=role, scopes=ScopeSet.parse("user/*.cruds"), issuer="t", org=org,
                     org_refs=frozenset({org}) if org else frozenset(), shared_refs=shared)


def doc(restricted: bool, custodian: str = B) -> dict[str, Any]:
    meta = {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}
    return {"resourceType": "DocumentReference", "id": "d1", "status": "current", **({"meta": meta} if restricted
                                                                                        else {}),
            "custodian": {"reference": custodian}, "content": [{"attachment": {"url": "Binary/b1"}}]}


BIN = {"resourceType": "Binary", "id": "b1", "contentType": "application/pdf", "data": "eA==",
       "securityContext": {"reference": "DocumentReference/d1"}}
SHARED = frozenset({"DocumentReference/d1", "Binary/b1"})


@pytest.mark.parametrize("principal, restricted, expected", [
    (who("safeguarding-lead", C), True, Visibility.VISIBLE),
    (who("ed-clinician", A), True, Visibility.VISIBLE),  # A wrote the copy
    (who("ed-clinician", B), True, Visibility.WITHHELD),  # B is its custodian, but did not write it
    (who("ed-clinician", B), False, Visibility.VISIBLE),
    (who("ed-clinician", C), True, Visibility.HIDDEN),
    (who("mash-practitioner", LA, SHARED), True, Visibility.WITHHELD),
    (who("mash-practitioner", LA, SHARED), False, Visibility.VISIBLE),
    (who("mash-practitioner", LA), False, Visibility.HIDDEN),  # not shared with this MASH
])
def test_binary_follows_its_document(principal: Principal, restricted: bool, expected: Visibility) -> None:
    context = SecurityContext(doc(restricted), created_by_org=A)
    assert binary_visibility(principal, BIN, A, context) is expected
    decision = decide(principal, "read", "Binary", BIN, created_by_org=A, context=context)
    status = {Visibility.VISIBLE: 200, Visibility.WITHHELD: 403, Visibility.HIDDEN: 404}[expected]
    assert (decision.allowed, decision.status) == (expected is Visibility.VISIBLE, status)
    if status == 403:
        assert (decision.msg_id, decision.reason) == ("SF-0802", (
            "This Binary belongs to a restricted DocumentReference; only safeguarding leads and the organisation "
            "that wrote it may see it"))


def test_binary_without_context_follows_its_own_policy() -> None:
    loose = {k: v for k, v in BIN.items() if k != "securityContext"}
    assert binary_visibility(who("ed-clinician", A), loose, A, None) is Visibility.VISIBLE
    assert binary_visibility(who("ed-clinician", B), loose, A, None) is Visibility.HIDDEN
    refused = decide(who("ed-clinician", B), "read", "Binary", loose, created_by_org=A)
    assert (refused.allowed, refused.status) == (False, 404)
    no_type = decide(who("mash-practitioner", LA, SHARED), "create", "Binary", BIN, created_by_org=A)
    assert (no_type.allowed, no_type.status) == (False, 403)


async def test_security_context_is_loaded_from_the_store(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    hv = token(clean_ctx, "health-visitor", org=w.provider)
    bin_ref = await created(rclient, binary())
    r = await rclient.post("/fhir/DocumentReference", headers=hv, json=copy(
        w.child, securityLabel=RESTRICTED, att=attachment(None, "application/pdf", url=bin_ref)))
    doc_id = r.json()["id"]
    stored = (await rclient.get(f"/fhir/{bin_ref}", headers={"Accept": "application/fhir+json"})).json()
    async with clean_ctx.sessionmaker() as session:
        context = await security_context(session, stored, clean_ctx.settings.fhir_base)
        assert context is not None and (context.content["id"], context.created_by_org) == (doc_id, w.provider)
        assert await security_context(session, {**stored, "securityContext": {"reference": "Patient/p"}},
                                      clean_ctx.settings.fhir_base) is None
    mash = who("mash-practitioner", w.mash, frozenset({f"DocumentReference/{doc_id}", bin_ref}))
    assert binary_visibility(mash, stored, None, context) is Visibility.WITHHELD
