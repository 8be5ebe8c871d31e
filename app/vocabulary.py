"""SafeFlag's own canonical URLs and code systems, stated once.

Every conformance resource SafeFlag publishes in `fhir_profiles/` lives under one canonical base;
the code systems, extensions and identifier systems below are the ones the server's rules read
and write. Modules take them from here instead of spelling the URLs again. A leaf at the bottom
of the layers, beside `app/config.py` and `app/errors.py`: it imports nothing from the application,
so every layer, storage included, may read it.
"""

from __future__ import annotations

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

# The flag categories that record a plan for the child (a child protection plan, a looked-after
# child, an unborn child's plan): an ED attendance of such a child is urgent, and these are the
# only Flags a MASH practitioner may write.
PLAN_CATEGORIES = frozenset({"child-protection-plan", "looked-after-child", "unborn-child-protection-plan"})

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
