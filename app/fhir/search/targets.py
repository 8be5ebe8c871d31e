"""Which resource types a reference search parameter can find, for `_revinclude` and the
CapabilityStatement's `searchRevInclude`.

A parameter declared with `targets` (`.where(resolve() is X)`) finds only those. For the others the
types the R4 element may point at (`SearchParameter.target` in R4's registry,
https://hl7.org/fhir/R4/searchparameter-registry.html, narrowed to the types served here), further
narrowed where a SafeFlag profile always applies (`safeguarding-flag`: `Flag.subject` is a Patient, the
author an Organization, Practitioner or PractitionerRole). `()` is a parameter that can find none of the
served types (`Organization.endpoint` is an Endpoint); `None` one whose element is Reference(Any).
tests/hapi checks the table against R4's own definitions.
"""

from __future__ import annotations

from app.fhir.search.definitions import SUPPORTED_TYPES, SearchParam

_PERSON = ("Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson")
_CARER = ("Patient", "Practitioner", "PractitionerRole", "Organization", "CareTeam", "RelatedPerson")
_STAFF = ("Practitioner", "PractitionerRole", "Organization")

REFERENCE_TARGETS: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("Patient", "general-practitioner"): _STAFF,
    ("Patient", "link"): ("Patient", "RelatedPerson"),
    ("PractitionerRole", "location"): (),
    ("PractitionerRole", "service"): (),
    ("PractitionerRole", "endpoint"): (),
    ("Organization", "endpoint"): (),
    ("CareTeam", "subject"): ("Patient",),
    ("CareTeam", "participant"): _CARER,
    ("Encounter", "subject"): ("Patient",),
    ("Encounter", "participant"): ("Practitioner", "PractitionerRole", "RelatedPerson"),
    ("Encounter", "reason-reference"): (),
    ("Encounter", "location"): (),
    ("Encounter", "episode-of-care"): (),
    ("Encounter", "based-on"): (),
    ("Flag", "subject"): ("Patient",),
    ("Flag", "author"): _STAFF,
    ("Communication", "subject"): ("Patient",),
    ("Communication", "recipient"): _CARER,
    ("Communication", "sender"): _PERSON,
    ("Communication", "based-on"): None,
    ("Communication", "part-of"): None,
    ("Communication", "instantiates-canonical"): (),
    ("DocumentReference", "subject"): ("Patient", "Practitioner"),
    ("DocumentReference", "author"): _PERSON,
    ("DocumentReference", "authenticator"): _STAFF,
    ("DocumentReference", "related"): None,
    ("Task", "owner"): _CARER,
    ("Task", "focus"): None,
    ("Task", "subject"): None,
    ("Task", "requester"): _PERSON,
    ("Task", "based-on"): None,
    ("AuditEvent", "entity"): None,
    ("AuditEvent", "agent"): _PERSON,
    ("AuditEvent", "source"): _PERSON,
}


def target_types(param: SearchParam) -> tuple[str, ...]:
    """The served types `param` can find."""
    if param.targets:
        return param.targets
    found = REFERENCE_TARGETS[(param.resource_type, param.name)]
    return SUPPORTED_TYPES if found is None else found


def can_target(param: SearchParam, resource_type: str) -> bool:
    return resource_type in target_types(param)
