"""SafeFlag's own canonical URLs, code systems and codes, stated once.

Every conformance resource SafeFlag publishes in `fhir_profiles/` lives under one canonical base;
the code systems, extensions and identifier systems below are the ones the server's rules read
and write, each system's codes in a class beside its URL. Modules take them from here instead of
spelling a URL or a code again (tests/unit/test_vocabulary.py fails on a spelled copy). A leaf at
the bottom of the layers, beside `app/config.py` and `app/errors.py`: it imports nothing from the
application, so every layer, storage included, may read it.
"""

from __future__ import annotations

from typing import Final

CANONICAL_BASE = "https://fhir.safeflag.example"


def canonical(kind: str, name: str) -> str:
    """The canonical URL of SafeFlag's conformance resource `kind`/`name`, e.g.
    `canonical("OperationDefinition", "qa-queue")`."""
    return f"{CANONICAL_BASE}/{kind}/{name}"


CODE_SYSTEM = CANONICAL_BASE + "/CodeSystem/"
STRUCTURE_DEFINITION = CANONICAL_BASE + "/StructureDefinition/"
SUBSCRIPTION_TOPIC = CANONICAL_BASE + "/SubscriptionTopic/"
IDENTIFIER_SYSTEM = CANONICAL_BASE + "/Id/"

# Code systems
FLAG_CATEGORY = CODE_SYSTEM + "safeguarding-flag-category"
COMMUNICATION_CATEGORY = CODE_SYSTEM + "safeguarding-communication-category"
TASK_CODE = CODE_SYSTEM + "safeguarding-task"
DOCUMENT_TYPE = CODE_SYSTEM + "safeguarding-document-type"
CARE_TEAM_ROLE = CODE_SYSTEM + "care-team-role"
ORGANIZATION_ROLE = CODE_SYSTEM + "organization-role"
UNROUTED_REASON = CODE_SYSTEM + "unrouted-reason"
USER_ROLE = CODE_SYSTEM + "user-role"
QA_OUTCOME = CODE_SYSTEM + "referral-qa-outcome"
STATUS_REASON_CODE = CODE_SYSTEM + "status-reason"  # the codes the status-reason extension carries
CARE_SETTING = CODE_SYSTEM + "care-setting"


# The codes of each code system above, one class per system: `SYSTEM` is its URL and every other
# upper-case name one of its codes, the whole set the published CodeSystem in
# `fhir_profiles/CodeSystem/` defines (tests/unit/test_vocabulary.py checks both ways; user-role is
# not published). Modules write `FlagCategory.FGM`, never the spelled code.


class FlagCategory:
    """safeguarding-flag-category: what a Flag warns about."""

    SYSTEM: Final = FLAG_CATEGORY
    CHILD_PROTECTION_PLAN: Final = "child-protection-plan"
    LOOKED_AFTER_CHILD: Final = "looked-after-child"
    UNBORN_CHILD_PROTECTION_PLAN: Final = "unborn-child-protection-plan"
    FGM: Final = "fgm"
    RISK_TO_SELF: Final = "risk-to-self"
    RISK_TO_OTHERS: Final = "risk-to-others"
    RISK_FROM_OTHERS: Final = "risk-from-others"
    EXPLOITATION_RISK: Final = "exploitation-risk"
    SIGNIFICANT_ADULT: Final = "significant-adult"
    DID_NOT_WAIT: Final = "did-not-wait"
    NOT_BROUGHT: Final = "not-brought"


# The flag categories that record a plan for the child (a child protection plan, a looked-after
# child, an unborn child's plan): an ED attendance of such a child is urgent, and these are the
# only Flags a MASH practitioner may write.
PLAN_CATEGORIES = frozenset({
    FlagCategory.CHILD_PROTECTION_PLAN, FlagCategory.LOOKED_AFTER_CHILD, FlagCategory.UNBORN_CHILD_PROTECTION_PLAN})


class CommunicationCategory:
    """safeguarding-communication-category: what a Communication the server writes or reads is."""

    SYSTEM: Final = COMMUNICATION_CATEGORY
    ED_ATTENDANCE: Final = "ed-attendance"
    DID_NOT_WAIT: Final = "did-not-wait"
    THINK_FAMILY: Final = "think-family"
    MASH_REFERRAL: Final = "mash-referral"
    REFERRAL_OUTCOME: Final = "referral-outcome"
    ACCESS_NOTIFICATION: Final = "access-notification"
    ESCALATION: Final = "escalation"


class TaskCode:
    """safeguarding-task: what a Task asks of its owner."""

    SYSTEM: Final = TASK_CODE
    ACKNOWLEDGE: Final = "acknowledge"
    REFERRAL_QA: Final = "referral-qa"
    QA_OUTCOME: Final = "qa-outcome"
    ESCALATED: Final = "escalated"


class DocumentType:
    """safeguarding-document-type: the DocumentReference types SafeFlag reads."""

    SYSTEM: Final = DOCUMENT_TYPE
    MASH_REFERRAL: Final = "mash-referral"


class CareTeamRole:
    """care-team-role: a practitioner's role in a child's care team."""

    SYSTEM: Final = CARE_TEAM_ROLE
    HEALTH_VISITOR: Final = "health-visitor"
    SCHOOL_NURSE: Final = "school-nurse"
    SAFEGUARDING_LEAD: Final = "safeguarding-lead"


class OrganizationRole:
    """organization-role: what an Organization is to the routing rules."""

    SYSTEM: Final = ORGANIZATION_ROLE
    ZERO_TO_NINETEEN_SERVICE: Final = "zero-to-nineteen-service"
    ZERO_TO_NINETEEN_DUTY: Final = "zero-to-nineteen-duty"
    LOCAL_AUTHORITY_MASH: Final = "local-authority-mash"
    EMERGENCY_DEPARTMENT: Final = "emergency-department"
    SEXUAL_HEALTH_SERVICE: Final = "sexual-health-service"


class CareSetting:
    """care-setting: the unscheduled care settings beside an emergency department."""

    SYSTEM: Final = CARE_SETTING
    URGENT_CARE: Final = "urgent-care"
    WALK_IN_CENTRE: Final = "walk-in-centre"
    OUT_OF_HOURS: Final = "out-of-hours"
    MATERNITY_TRIAGE: Final = "maternity-triage"


class UnroutedReason:
    """unrouted-reason: why an ED attendance reached no care team."""

    SYSTEM: Final = UNROUTED_REASON
    PATIENT_UNKNOWN: Final = "patient-unknown"  # no live Patient is the attendance's subject (NHS number unknown)
    PATIENT_AMBIGUOUS: Final = "patient-ambiguous"  # several live Patients hold its NHS number (older data)
    NO_CARE_TEAM: Final = "no-care-team"  # the child is on file: no CareTeam member for its age, no managing org


class QaOutcome:
    """referral-qa-outcome: a safeguarding lead's judgement of a MASH referral."""

    SYSTEM: Final = QA_OUTCOME
    CLEAR_AND_COMPLETE: Final = "clear-and-complete"
    INCOMPLETE_INFORMATION: Final = "incomplete-information"
    THRESHOLD_NOT_EVIDENT: Final = "threshold-not-evident"
    ESCALATED: Final = "escalated"


class StatusReason:
    """status-reason: why a Flag or a document left its active or current status."""

    SYSTEM: Final = STATUS_REASON_CODE
    ADDED_IN_ERROR: Final = "added-in-error"
    NO_LONGER_REQUIRED: Final = "no-longer-required"
    PLAN_ENDED: Final = "plan-ended"
    SUPERSEDED: Final = "superseded"


class UserRole:
    """user-role: the role a token or sign-in carries, in the policy's order (not published as a
    CodeSystem; AuditEvent agents carry it). Three are also care-team roles, with the same codes."""

    SYSTEM: Final = USER_ROLE
    ED_CLINICIAN: Final = "ed-clinician"
    HEALTH_VISITOR: Final = CareTeamRole.HEALTH_VISITOR
    SCHOOL_NURSE: Final = CareTeamRole.SCHOOL_NURSE
    SEXUAL_HEALTH_CLINICIAN: Final = "sexual-health-clinician"
    SAFEGUARDING_LEAD: Final = CareTeamRole.SAFEGUARDING_LEAD
    MASH_PRACTITIONER: Final = "mash-practitioner"
    SYSTEM_CLIENT: Final = "system"
    ADMIN: Final = "admin"


class TopicName:
    """The subscription topics SafeFlag publishes, by name: `fhir_profiles/SubscriptionTopic/<name>.json`,
    canonical URL SUBSCRIPTION_TOPIC + name."""

    BASE: Final = SUBSCRIPTION_TOPIC
    ED_ATTENDANCE: Final = "ed-attendance"
    SAFEGUARDING_FLAG: Final = "safeguarding-flag"
    MASH_REFERRAL: Final = "mash-referral"
    ACCESS_NOTIFICATION: Final = "access-notification"


# Extensions
STATUS_REASON = STRUCTURE_DEFINITION + "status-reason"
SUBSCRIPTION_SECRET = STRUCTURE_DEFINITION + "subscription-secret"

# HL7 code systems the rules read
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"

# Other published systems SafeFlag reads and writes
SNOMED = "http://snomed.info/sct"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
# FHIR core: a resource type's base profile is HL7_STRUCTURE_DEFINITION + type
HL7_STRUCTURE_DEFINITION = "http://hl7.org/fhir/StructureDefinition/"
# R5 SubscriptionTopic elements carried as cross-version extensions on the R4 Basic we publish
TOPIC_EXTENSION = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
# The Subscriptions R5 Backport IG: its extensions and profiles, and its operations
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
BACKPORT_OPERATION = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
