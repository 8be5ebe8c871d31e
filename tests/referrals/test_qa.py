"""Quality review of referral copies and the local authority's reply (contract section 5): referral-qa
Tasks, the queue of unreviewed copies per organisation, and referral-outcome Communications."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import event

from app.context import AppContext
from tests.conftest import FHIR
from tests.referrals.support import (
    COMM_CATEGORY,
    World,
    copy,
    created,
    oo,
    organization,
    qa_task,
    reason,
    referral,
    role,
    stored_counts,
    token,
)


def queue_ids(bundle: dict[str, Any]) -> list[str]:
    return [f"DocumentReference/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode") == "match"]


async def test_queue_lists_unreviewed_copies_per_organisation(rclient: httpx.AsyncClient) -> None:
    w = await World.make(rclient)
    other = await created(rclient, organization("Southgate 0-19 Service"))
    first = await created(rclient, copy(w.child, custodian=w.provider))
    by_author = await created(rclient, copy(w.child, author=w.hv))  # of the provider through its health visitor
    elsewhere = await created(rclient, copy(w.child, custodian=other))
    r = await rclient.get("/fhir/DocumentReference/$qa-queue", params={"organization": w.provider})
    assert r.status_code == 200
    page = r.json()
    assert (page["type"], page["total"], queue_ids(page)) == ("searchset", 2, [first, by_author])
    assert page["link"][0] == {"relation": "self",
                               "url": f"{FHIR}/DocumentReference/$qa-queue?organization={w.provider}&_count=50"}
    task = await created(rclient, qa_task(first, w.child, w.lead, "incomplete-information"))
    assert task.startswith("Task/")
    page = (await rclient.get("/fhir/DocumentReference/$qa-queue", params={"organization": w.provider})).json()
    assert (page["total"], queue_ids(page)) == (1, [by_author])
    everyone = (await rclient.get("/fhir/DocumentReference/$qa-queue", params={"_count": "1"})).json()
    assert (everyone["total"], queue_ids(everyone)) == (2, [by_author])
    assert [link["relation"] for link in everyone["link"]] == ["self", "first", "next", "last"]
    assert everyone["link"][2]["url"] == f"{FHIR}/DocumentReference/$qa-queue?_count=1&_offset=1"
    second = (await rclient.get(everyone["link"][2]["url"])).json()
    assert queue_ids(second) == [elsewhere]
    # an unfinished review leaves the copy in the queue; entered-in-error copies leave it
    await created(rclient, qa_task(by_author, w.child, w.lead, None, status="in-progress"))
    assert queue_ids((await rclient.get("/fhir/DocumentReference/$qa-queue",
                                        params={"organization": w.provider})).json()) == [by_author]
    stored = (await rclient.get(f"/fhir/{by_author}")).json()
    r = await rclient.put(f"/fhir/{by_author}", json={**stored, "status": "entered-in-error", "extension": [reason()]})
    assert r.status_code == 200, r.text
    assert queue_ids((await rclient.get("/fhir/DocumentReference/$qa-queue",
                                        params={"organization": w.provider})).json()) == []


async def test_the_queues_last_page_tells_its_total_without_counting(
    rclient: httpx.AsyncClient, clean_ctx: AppContext
) -> None:
    """A page with room to spare is the last: its total is the copies before it and on it, as a search's
    is; only a full page counts the queue (the lead's desk reads the queue at every view)."""
    w = await World.make(rclient)
    await created(rclient, copy(w.child, custodian=w.provider))
    await created(rclient, copy(w.child, author=w.hv))
    counted: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("SELECT count("):
            counted.append(statement)
    totals, counts = [], []
    event.listen(clean_ctx.engine.sync_engine, "before_cursor_execute", count)
    try:
        for params in ({"_count": "1"}, {"_count": "2", "_offset": "1"}, {"_count": "2"}, {}):
            before = len(counted)
            r = await rclient.get("/fhir/DocumentReference/$qa-queue", params={"organization": w.provider, **params})
            assert r.status_code == 200, r.text
            totals.append(r.json()["total"])
            counts.append(len(counted) - before)
    finally:
        event.remove(clean_ctx.engine.sync_engine, "before_cursor_execute", count)
    assert (totals, counts) == ([2, 2, 2, 2], [1, 0, 1, 0])


async def test_queue_parameters_are_checked(rclient: httpx.AsyncClient) -> None:
    r = await rclient.get("/fhir/DocumentReference/$qa-queue", params={"organization": "Patient/p1"})
    assert (r.status_code, r.json()) == (400, oo(
        "value", "SF-0950: organization must be a reference to an Organization (Organization/<id>), not 'Patient/p1'",
        ["organization"]))
    r = await rclient.get("/fhir/DocumentReference/$qa-queue", params={"organisation": "Organization/o"})
    assert (r.status_code, r.json()) == (400, oo(
        "not-supported", "SF-0953: Unknown parameter 'organisation' for DocumentReference/$qa-queue (known: "
                         "organization, _count, _offset)", ["organisation"]))


async def test_queue_is_a_search_under_the_access_policy(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    other = await created(rclient, organization("Southgate 0-19 Service"))
    mine = await created(rclient, copy(w.child, custodian=w.provider))
    await created(rclient, copy(w.child, custodian=other))
    hv = token(clean_ctx, "health-visitor", org=w.provider, fhir_user=w.hv)
    page = (await rclient.get("/fhir/DocumentReference/$qa-queue", headers=hv)).json()
    assert queue_ids(page) == [mine]  # another organisation's copies are outside a health visitor's reach
    mash = token(clean_ctx, "mash-practitioner", org=w.mash)
    assert queue_ids((await rclient.get("/fhir/DocumentReference/$qa-queue", headers=mash)).json()) == []


QA_CASES = {
    "outcome outside the value set": (lambda w, doc: qa_task(doc, w.child, w.lead, "bogus"), "code-invalid", "SF-0605",
                                      ["Task.output[0].valueCodeableConcept"]),
    "owner not a safeguarding lead": (lambda w, doc: qa_task(doc, w.child, w.hv), "business-rule", "SF-0933",
                                      ["Task.owner"]),
    "focus not a referral copy": (lambda w, doc: qa_task(w.child.replace("Patient", "DocumentReference"), w.child,
                                                         w.lead), "business-rule", "SF-0932", ["Task.focus"]),
    "completed without outcome": (lambda w, doc: qa_task(doc, w.child, w.lead, None), "required", "SF-0934",
                                  ["Task.output"]),
    "for another child": (lambda w, doc: {**qa_task(doc, w.child, w.lead), "for": {"reference": "Patient/other"}},
                          "business-rule", "SF-0935", ["Task.for"]),
}


@pytest.mark.parametrize("case", list(QA_CASES))
async def test_bad_review_task(rclient: httpx.AsyncClient, clean_ctx: AppContext, case: str) -> None:
    w = await World.make(rclient)
    doc = await created(rclient, copy(w.child))
    make, code, msg_id, expression = QA_CASES[case]
    before = await stored_counts(clean_ctx)
    r = await rclient.post("/fhir/Task", json=make(w, doc))
    issues = r.json()["issue"]
    assert (r.status_code, [(i["code"], i["diagnostics"][:8], i["expression"]) for i in issues]) == (
        422, [(code, f"{msg_id}:", expression)])
    assert await stored_counts(clean_ctx) == before


async def test_review_owned_by_a_lead_practitioner(rclient: httpx.AsyncClient) -> None:
    """The owner may be the lead's Practitioner, when one of their PractitionerRoles is safeguarding-lead."""
    w = await World.make(rclient)
    doc = await created(rclient, copy(w.child))
    person = await created(rclient, {"resourceType": "Practitioner", "name": [{"family": "Lead"}]})
    await created(rclient, role(w.provider, "safeguarding-lead", person))
    r = await rclient.post("/fhir/Task", json=qa_task(doc, w.child, person, "escalated"))
    assert r.status_code == 201, r.text
    r = await rclient.post("/fhir/Task", json=qa_task(doc, w.child, "Organization/" + w.provider.split("/")[1]))
    assert (r.status_code, r.json()["issue"][0]["diagnostics"]) == (422, (
        "SF-0933: A referral-qa Task is owned by a safeguarding lead (a PractitionerRole coded "
        "https://fhir.safeflag.example/CodeSystem/care-team-role|safeguarding-lead, or its Practitioner); "
        f"'{w.provider}' is not one"))


def reply(w: World, answered: list[str] | None) -> dict[str, Any]:
    comm: dict[str, Any] = {
        "resourceType": "Communication", "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": "referral-outcome"}]}],
        "subject": {"reference": w.child}, "sender": {"reference": w.mash}, "recipient": [{"reference": w.hv}],
        "sent": "2026-01-07T15:00:00Z", "payload": [{"contentString": "Strategy discussion held; S47 enquiry."}],
    }
    if answered is not None:
        comm["inResponseTo"] = [{"reference": ref} for ref in answered]
    return comm


async def test_local_authority_reply(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    w = await World.make(rclient)
    doc = await created(rclient, copy(w.child))
    sent = await created(rclient, referral(w.child, doc, w.mash, w.hv))
    la = token(clean_ctx, "mash-practitioner", org=w.mash)
    r = await rclient.post("/fhir/Communication", json=reply(w, [sent]), headers=la)
    assert r.status_code == 201, r.text
    found = (await rclient.get("/fhir/Communication", params={"category": f"{COMM_CATEGORY}|referral-outcome",
                                                               "patient": w.child})).json()
    assert [e["resource"]["inResponseTo"] for e in found["entry"] if e["search"]["mode"] == "match"] == [
        [{"reference": sent}]]
    notice = await created(rclient, {**referral(w.child, doc, w.mash), "category": [
        {"coding": [{"system": COMM_CATEGORY, "code": "ed-attendance"}]}], "payload": [{"contentString": "ED"}]})
    before = await stored_counts(clean_ctx)
    r = await rclient.post("/fhir/Communication", json=reply(w, None))
    assert (r.status_code, r.json()) == (422, oo(
        "required", "SF-0930: A referral-outcome Communication names the referral it answers in inResponseTo",
        ["Communication.inResponseTo"]))
    r = await rclient.post("/fhir/Communication", json=reply(w, [sent, notice]))
    assert (r.status_code, r.json()) == (422, oo(
        "business-rule", f"SF-0931: inResponseTo '{notice}' is not a stored mash-referral Communication",
        ["Communication.inResponseTo[1]"]))
    r = await rclient.post("/fhir/Communication", json={**reply(w, [sent]), "subject": {"reference": "Patient/x"}})
    assert (r.status_code, r.json()) == (422, oo(
        "business-rule", f"SF-0936: Communication.subject differs from the subject of the referral {sent}",
        ["Communication.subject"]))
    assert await stored_counts(clean_ctx) == before
