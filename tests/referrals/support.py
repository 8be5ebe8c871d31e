"""Builders and an app for the MASH referral copy tests (contract section 5): the organisations and
people involved, a referral copy's DocumentReference / Binary / Communication, QA Tasks, and an app
with the referral and governance routes in front of the generic FHIR routes (as the lead includes
them in app/main.py). Test-range NHS numbers only."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.context import AppContext
from app.storage.tables import resource

CS = "https://fhir.safeflag.example/CodeSystem/"
EXT = "https://fhir.safeflag.example/StructureDefinition/"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
DOC_TYPE = CS + "safeguarding-document-type"
COMM_CATEGORY = CS + "safeguarding-communication-category"
TASK = CS + "safeguarding-task"
QA_OUTCOME = CS + "referral-qa-outcome"
FHIR_JSON = "application/fhir+json"
# the document of fhir_profiles/examples/DocumentReference-example-mash-referral-copy.json
TEXT = b"Referral to Example Borough MASH about Alex Example (9990000018).\n"
TEXT_B64 = base64.b64encode(TEXT).decode()
TEXT_SIZE, TEXT_HASH = 66, "MeL+e0opW3DBuL1qNjPmvvjVIfg="
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
async def rclient(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """tests/conftest.py's `client` (both databases, admin token); app/main.py serves the referral routes."""
    return client


def organization(name: str, role: str | None = None) -> dict[str, Any]:
    org: dict[str, Any] = {"resourceType": "Organization", "name": name}
    if role:
        org["type"] = [{"coding": [{"system": CS + "organization-role", "code": role}]}]
    return org


def role(org: str, code: str, practitioner: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "PractitionerRole", "active": True, "organization": {"reference": org},
                           "code": [{"coding": [{"system": CS + "care-team-role", "code": code}]}]}
    if practitioner:
        out["practitioner"] = {"reference": practitioner}
    return out


def child(nhs: str = "9990000018") -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}],
            "name": [{"family": "Example", "given": ["Alex"]}], "birthDate": "2022-03-04"}


def attachment(data: bytes | None = TEXT, content_type: str = "text/plain", **extra: Any) -> dict[str, Any]:
    att: dict[str, Any] = {"contentType": content_type}
    if data is not None:
        att["data"] = base64.b64encode(data).decode()
    return {**att, **extra}


def copy(subject: str, *, author: str | None = None, custodian: str | None = None, att: dict[str, Any] | None = None,
         **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": DOC_TYPE, "code": "mash-referral", "display": "MASH referral copy"}]},
        "subject": {"reference": subject},
        "date": "2026-01-05T10:00:00Z",
    }
    if author:
        doc["author"] = [{"reference": author}]
    if custodian:
        doc["custodian"] = {"reference": custodian}
    doc["content"] = [{"attachment": att if att is not None else attachment()}]
    return {**doc, **extra}


def binary(data: bytes = PDF, content_type: str = "application/pdf", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Binary", "contentType": content_type, "data": base64.b64encode(data).decode(), **extra}


def referral(subject: str, doc: str, mash: str | None, sender: str | None = None, **extra: Any) -> dict[str, Any]:
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": "mash-referral"}]}],
        "subject": {"reference": subject},
        "sent": "2026-01-05T10:00:00Z",
        "payload": [{"contentReference": {"reference": doc}}],
    }
    if mash:
        comm["recipient"] = [{"reference": mash}]
    if sender:
        comm["sender"] = {"reference": sender}
    return {**comm, **extra}


def qa_task(doc: str, subject: str, owner: str, outcome: str | None = "clear-and-complete",
            status: str = "completed") -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task", "status": status, "intent": "order",
        "code": {"coding": [{"system": TASK, "code": "referral-qa"}]},
        "focus": {"reference": doc}, "for": {"reference": subject}, "owner": {"reference": owner},
    }
    if outcome:
        task["output"] = [{"type": {"coding": [{"system": TASK, "code": "qa-outcome"}]},
                           "valueCodeableConcept": {"coding": [{"system": QA_OUTCOME, "code": outcome}]}}]
    return task


def reason(code: str = "added-in-error") -> dict[str, Any]:
    return {"url": EXT + "status-reason",
            "valueCodeableConcept": {"coding": [{"system": CS + "status-reason", "code": code}]}}


def entry(resource: dict[str, Any], full_url: str | None = None, method: str = "POST",
          url: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resource": resource, "request": {"method": method, "url": url or resource["resourceType"]}}
    if full_url:
        out["fullUrl"] = full_url
    return out


def bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def oo(code: str, diagnostics: str, expression: list[str] | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression is not None:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    r = await client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return f"{resource['resourceType']}/{r.json()['id']}"


async def stored_counts(ctx: AppContext) -> dict[str, tuple[int, int]]:
    """How many resources (and versions) of each type are stored: proof that a refused write left nothing
    behind. AuditEvents are left out: a refused attempt is audited, in a transaction of its own."""
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(
            select(resource.c.res_type, func.count(), func.sum(resource.c.version_id))
            .where(resource.c.res_type != "AuditEvent").group_by(resource.c.res_type)
        )).all()
    return {t: (int(n), int(v)) for t, n, v in rows}


async def setting(ctx: AppContext, **values: Any) -> dict[str, Any]:
    """Change settings of the session's context; returns the old values for restoring."""
    old = {k: getattr(ctx.settings, k) for k in values}
    for k, v in values.items():
        setattr(ctx.settings, k, v)
    return old


class World:
    """The people and places of one referral: a child, the 0-19 provider with a health visitor and a
    safeguarding lead, and the local authority MASH."""

    child: str
    provider: str
    hv: str
    lead: str
    mash: str

    @classmethod
    async def make(cls, client: httpx.AsyncClient) -> World:
        w = cls()
        w.child = await created(client, child())
        w.provider = await created(client, organization("Northgate 0-19 Service", "zero-to-nineteen-service"))
        w.mash = await created(client, organization("Example Borough MASH", "local-authority-mash"))
        w.hv = await created(client, role(w.provider, "health-visitor"))
        w.lead = await created(client, role(w.provider, "safeguarding-lead"))
        return w


def token(ctx: AppContext, role: str, **claims: Any) -> dict[str, str]:
    """Authorization header for a user of `role` (claims: org, fhir_user, care_setting)."""
    from app.security.tokens import default_scope
    from tests.security.tokens_fixture import issuer_for

    jwt = issuer_for(ctx).mint(sub=f"test-{role}", role=role, scope=default_scope(role), **claims)
    return {"Authorization": f"Bearer {jwt}"}


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A stored resource without its server-set id and meta (for whole-content comparisons)."""
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}
