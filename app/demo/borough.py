"""The synthetic borough `safeflag demo` seeds: its organisations, people and one family, and the
resources the story writes (docs/api/codes.md for the codes).

Every id is chosen here so that seeding is `PUT` update-as-create and a re-run changes nothing
(https://hl7.org/fhir/R4/http.html#upsert). NHS numbers come from the 999 test range and carry valid
Modulus 11 check digits; they are not the walkthrough's, so the demo leaves a reader's own data alone.
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Any

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.vocabulary import (
    ACT_CODE,
    BACKPORT,
    CARE_TEAM_ROLE,
    COMMUNICATION_CATEGORY,
    DOCUMENT_TYPE,
    FLAG_CATEGORY,
    ORGANIZATION_ROLE,
    QA_OUTCOME,
    SNOMED,
    SUBSCRIPTION_SECRET,
    SUBSCRIPTION_TOPIC,
    TASK_CODE,
    CareTeamRole,
    CommunicationCategory,
    DocumentType,
    FlagCategory,
    OrganizationRole,
    QaOutcome,
    TaskCode,
    TopicName,
)

TOPIC = SUBSCRIPTION_TOPIC
SECRET_EXT = SUBSCRIPTION_SECRET

CHILD_NHS, MOTHER_NHS = "9990000166", "9990000174"
LA, ED, ZERO19, DUTY, MASH = (f"Organization/demo-{x}" for x in ("la", "ed", "0-19", "0-19-duty", "mash"))
HV, LEAD, ED_NURSE = (f"PractitionerRole/demo-{x}" for x in ("hv", "lead", "ed-nurse"))
CHILD, MOTHER = "Patient/demo-child", "Patient/demo-mother"
SUBSCRIPTION = "Subscription/demo-0-19-ed-attendance"
OFFICE_HOURS = {"system": "phone", "value": "01632 960101", "use": "work", "rank": 1}
OUT_OF_HOURS = {"system": "phone", "value": "01632 960199", "use": "work", "rank": 2}
ED_CARE_SETTING = "310000008"  # SNOMED CT emergency department: an unscheduled-care setting


def _id(ref: str) -> str:
    return ref.partition("/")[2]


def coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def organization(ref: str, name: str, role: str | None = None, **extra: Any) -> dict[str, Any]:
    org: dict[str, Any] = {"resourceType": "Organization", "id": _id(ref), "active": True, "name": name}
    if role:
        org["type"] = [coding(ORGANIZATION_ROLE, role)]
    return {**org, **extra}


def practitioner_role(ref: str, org: str, role: str | None, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "PractitionerRole", "id": _id(ref), "active": True,
                           "organization": {"reference": org}, "practitioner": {"display": name}}
    if role:
        out["code"] = [coding(CARE_TEAM_ROLE, role)]
    return out


def patient(ref: str, nhs: str, given: str, birth: str, gender: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": _id(ref),
            "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs}],
            "name": [{"use": "official", "family": "Demo", "given": [given]}], "gender": gender,
            "birthDate": birth, **extra}


def reference_data(today: date) -> list[dict[str, Any]]:
    """In dependency order: organisations, roles, the family, the child's CareTeam."""
    # born in January two years ago: under 5 (a health visitor's child) and the same date all year
    child_birth = date(today.year - 2, 1, 15).isoformat()
    la = organization(LA, "Demo Borough Children's Services", telecom=[OFFICE_HOURS, OUT_OF_HOURS], contact=[
        {"purpose": {"text": "Office hours (Mon-Fri 09:00-17:00)"}, "telecom": [OFFICE_HOURS]},
        {"purpose": {"text": "Out of hours emergency duty team"}, "telecom": [OUT_OF_HOURS]}])
    return [
        la,
        organization(MASH, "Demo Borough MASH", OrganizationRole.LOCAL_AUTHORITY_MASH, partOf={"reference": LA}),
        organization(ED, "Demo General Hospital Emergency Department", OrganizationRole.EMERGENCY_DEPARTMENT),
        organization(ZERO19, "Demo 0-19 Service", OrganizationRole.ZERO_TO_NINETEEN_SERVICE),
        organization(DUTY, "Demo 0-19 Duty Team", OrganizationRole.ZERO_TO_NINETEEN_DUTY,
                     partOf={"reference": ZERO19}),
        practitioner_role(HV, ZERO19, CareTeamRole.HEALTH_VISITOR, "Hana Visitor"),
        practitioner_role(LEAD, ZERO19, CareTeamRole.SAFEGUARDING_LEAD, "Sam Lead"),
        practitioner_role(ED_NURSE, ED, None, "Eddie Nurse"),
        patient(MOTHER, MOTHER_NHS, "Morgan", "1996-05-20", "female"),
        patient(CHILD, CHILD_NHS, "Casey", child_birth, "female", managingOrganization={"reference": ZERO19}),
        {"resourceType": "CareTeam", "id": "demo-child-0-19", "status": "active", "name": "Casey's 0-19 team",
         "subject": {"reference": CHILD}, "managingOrganization": [{"reference": ZERO19}],
         "participant": [{"role": [coding(CARE_TEAM_ROLE, CareTeamRole.HEALTH_VISITOR)],
                          "member": {"reference": HV}}]},
    ]


def plan_flag(today: date) -> dict[str, Any]:
    return {"resourceType": "Flag", "status": "active",
            "category": [coding(FLAG_CATEGORY, FlagCategory.CHILD_PROTECTION_PLAN)],
            "code": {"coding": [{"system": SNOMED, "code": "342191000000101",
                                 "display": "Child protection plan"}]},
            "subject": {"reference": CHILD}, "period": {"start": today.isoformat()},
            "author": {"reference": LA}}


def subscription(endpoint: str, secret: str) -> dict[str, Any]:
    """The 0-19 service's rest-hook subscription to its health visitor's ED attendance notices."""
    return {
        "resourceType": "Subscription", "id": _id(SUBSCRIPTION), "status": "requested",
        "extension": [{"url": SECRET_EXT, "valueString": secret}],
        "reason": "Tell the 0-19 service's health visitor about ED attendances of her children",
        "criteria": TOPIC + TopicName.ED_ATTENDANCE,
        "_criteria": {"extension": [{"url": BACKPORT + "backport-filter-criteria",
                                     "valueString": f"Communication?recipient={HV}"}]},
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content",
                                                "valueCode": "id-only"}]}},
    }


def attendance(start: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "in-progress",
            "class": {"system": ACT_CODE, "code": "EMER"}, "subject": {"reference": CHILD},
            "period": {"start": start}, "serviceProvider": {"reference": ED}}


def referral_copy(sent: str, text: str) -> dict[str, Any]:
    """A transaction Bundle: the document as a Binary, its DocumentReference, the referral Communication
    (in that order: the copy is checked against its Binary's bytes when it is written)."""
    binary, copy = (f"urn:uuid:6a0d51a4-1d0e-4c39-9e1e-2f3f0b9e000{n}" for n in (1, 2))
    entries: list[tuple[str | None, dict[str, Any]]] = [
        (binary, {"resourceType": "Binary", "contentType": "text/plain",
                  "data": base64.b64encode(text.encode()).decode()}),
        (copy, {"resourceType": "DocumentReference", "status": "current",
                "type": coding(DOCUMENT_TYPE, DocumentType.MASH_REFERRAL),
                "subject": {"reference": CHILD}, "author": [{"reference": ED_NURSE}],
                "description": "Referral to Demo Borough MASH",
                "content": [{"attachment": {"contentType": "text/plain", "url": binary}}]}),
        (None, {"resourceType": "Communication", "status": "completed",
                "category": [coding(COMMUNICATION_CATEGORY, CommunicationCategory.MASH_REFERRAL)],
                "subject": {"reference": CHILD}, "sender": {"reference": ED_NURSE},
                "recipient": [{"reference": MASH}], "sent": sent,
                "payload": [{"contentReference": {"reference": copy}}]}),
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {**({"fullUrl": url} if url else {}), "resource": res,
         "request": {"method": "POST", "url": res["resourceType"]}} for url, res in entries]}


def qa_review(document: str) -> dict[str, Any]:
    task = TASK_CODE
    return {"resourceType": "Task", "status": "completed", "intent": "order",
            "code": coding(task, TaskCode.REFERRAL_QA), "focus": {"reference": document},
            "for": {"reference": CHILD}, "owner": {"reference": LEAD},
            "output": [{"type": coding(task, TaskCode.QA_OUTCOME),
                        "valueCodeableConcept": coding(QA_OUTCOME, QaOutcome.CLEAR_AND_COMPLETE)}]}
