"""Constants and request bodies of the end-to-end scenarios in tests/hapi/emitted.py: organisations, flags of
each category (contract section 4), subscriptions, ED Encounters and a MASH referral copy, all valid for
SafeFlag's profiles and rules; reference data from fhir_profiles/examples (test-range NHS numbers only)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tests.e2e.server import TEST_CLOCK
from tests.hapi.conformance import EXAMPLES_DIR, SD
from tests.safeguarding.support import CONTRACT_CODES  # contract section 4: Flag.code per category

BASE_URL = "http://127.0.0.1:8080"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CS = "https://fhir.safeflag.example/CodeSystem/"
TOPIC = "https://fhir.safeflag.example/SubscriptionTopic/"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
COMM = CS + "safeguarding-communication-category"
TASK = CS + "safeguarding-task"
SECRET = "hapi-validation-secret-0123456789abcdef"
CHILD, MOTHER, FATHER_RP = "Patient/example-child", "Patient/example-mother", "RelatedPerson/example-father"
LA, ZERO19, ED, MASH = (
    "Organization/example-local-authority",
    "Organization/example-zero-to-nineteen",
    "Organization/ed",
    "Organization/mash",
)
ED_CARE_SETTING = "310000008"  # SNOMED CT emergency department: reads here raise access notifications
REFERRAL_TEXT = b"Referral to Example Borough MASH about Alex Example (9990000018).\n"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((EXAMPLES_DIR / name).read_bytes())
    return data


def flag(category: str, subject: str, author: str = LA, **extra: Any) -> dict[str, Any]:
    system, code = CONTRACT_CODES[category]
    return {
        "resourceType": "Flag",
        "status": "active",
        "category": [{"coding": [{"system": CS + "safeguarding-flag-category", "code": category}]}],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": subject},
        "period": {"start": "2026-01-01"},
        "author": {"reference": author},
        **extra,
    }


def organization(rid: str, name: str, role: str | None = None) -> dict[str, Any]:
    org: dict[str, Any] = {
        "resourceType": "Organization",
        "id": rid,
        "name": name,
        "telecom": [{"system": "phone", "value": "01632 960001", "use": "work"}],
    }
    if role:
        org["type"] = [{"coding": [{"system": CS + "organization-role", "code": role}]}]
    return org


def subscription(endpoint: str, topic: str, content: str, *filters: str) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "HAPI validation of notifications",
        "criteria": TOPIC + topic,
        "extension": [{"url": SD + "subscription-secret", "valueString": SECRET}],
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": content}]},
        },
    }
    if filters:
        sub["_criteria"] = {
            "extension": [{"url": BACKPORT + "backport-filter-criteria", "valueString": f} for f in filters]
        }
    return sub


def encounter(
    subject: dict[str, Any], *, disposition: str | None = None, reasons: tuple[str, ...] = ()
) -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "EMER", "display": "emergency"},
        "subject": subject,
        "period": {"start": TEST_CLOCK.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "serviceProvider": {"reference": ED},
    }
    if reasons:
        enc["reasonCode"] = [{"coding": [{"system": SNOMED, "code": c}]} for c in reasons]
    if disposition:
        enc["hospitalization"] = {
            "dischargeDisposition": {"coding": [{"system": SNOMED, "code": disposition}]}
        }
    return enc


def status_reason(code: str) -> dict[str, Any]:
    return {
        "url": SD + "status-reason",
        "valueCodeableConcept": {"coding": [{"system": CS + "status-reason", "code": code}]},
    }


def _urn(n: int) -> str:
    return f"urn:uuid:5f0e7d4c-0000-4000-8000-00000000000{n}"


def referral_transaction() -> dict[str, Any]:
    """A referral copy as a health visitor stores it: Binary, DocumentReference and Communication in one
    transaction (contract section 5)."""
    binary = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "securityContext": {"reference": _urn(2)},
        "data": base64.b64encode(PDF).decode(),
    }
    copy = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": CS + "safeguarding-document-type", "code": "mash-referral"}]},
        "subject": {"reference": CHILD},
        "author": [{"reference": "PractitionerRole/hv-1"}],
        "content": [{"attachment": {"contentType": "application/pdf", "url": _urn(1), "title": "Referral"}}],
    }
    comm = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMM, "code": "mash-referral"}]}],
        "subject": {"reference": CHILD},
        "sent": "2026-01-05T10:00:00Z",
        "sender": {"reference": "PractitionerRole/hv-1"},
        "recipient": [{"reference": MASH}],
        "payload": [{"contentReference": {"reference": _urn(2)}}],
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": _urn(n), "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for n, r in ((1, binary), (2, copy), (3, comm))
        ],
    }


def inline_copy() -> dict[str, Any]:
    """A referral copy with the document inline (the server fills in size and hash)."""
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": CS + "safeguarding-document-type", "code": "mash-referral"}]},
        "subject": {"reference": CHILD},
        "custodian": {"reference": ZERO19},
        "content": [
            {"attachment": {"contentType": "text/plain", "data": base64.b64encode(REFERRAL_TEXT).decode()}}
        ],
    }


def qa_task(document_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "completed",
        "intent": "order",
        "code": {"coding": [{"system": TASK, "code": "referral-qa"}]},
        "focus": {"reference": f"DocumentReference/{document_id}"},
        "for": {"reference": CHILD},
        "owner": {"reference": "PractitionerRole/lead-1"},
        "output": [
            {
                "type": {"coding": [{"system": TASK, "code": "qa-outcome"}]},
                "valueCodeableConcept": {
                    "coding": [{"system": CS + "referral-qa-outcome", "code": "clear-and-complete"}]
                },
            }
        ],
    }


def referral_outcome(referral_id: str) -> dict[str, Any]:
    """The local authority's reply to the referral Communication."""
    return {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMM, "code": "referral-outcome"}]}],
        "subject": {"reference": CHILD},
        "sent": "2026-01-07T15:00:00Z",
        "inResponseTo": [{"reference": f"Communication/{referral_id}"}],
        "sender": {"reference": MASH},
        "recipient": [{"reference": "PractitionerRole/hv-1"}],
        "payload": [{"contentString": "Strategy discussion held; section 47 enquiry started."}],
    }
