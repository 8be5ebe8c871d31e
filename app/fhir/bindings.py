"""Required code bindings of R4 (https://hl7.org/fhir/R4/terminologies.html#required), which
fhir.resources does not enforce (it accepts `Flag.status` "bogus").

Keys are element definition paths: the resource or data type, then the element (backbone elements
continue their parent's path, so `Encounter.statusHistory.status`, `Timing.repeat.periodUnit`). A
data type's binding applies wherever the type occurs, extensions included. The list covers every
required binding of the resource types SafeFlag serves and of the data types they (or their
extensions) use; the ValueSet is named in each comment. Bindings to code systems too large to list
are checked for syntax only (`MIME_TYPE_PATHS`, `LANGUAGE_PATHS`, `CURRENCY_PATHS`); bindings to
FHIRAllTypes (DataRequirement.type, ParameterDefinition.type) are not checked.
"""

from __future__ import annotations

_GENDER = frozenset({"male", "female", "other", "unknown"})  # administrative-gender
_PRIORITY = frozenset({"routine", "urgent", "asap", "stat"})  # request-priority
_ENCOUNTER_STATUS = frozenset(
    {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"}
)  # encounter-status
_UNITS_OF_TIME = frozenset({"s", "min", "h", "d", "wk", "mo", "a"})  # units-of-time
_DAYS_OF_WEEK = frozenset({"mon", "tue", "wed", "thu", "fri", "sat", "sun"})  # days-of-week
_COMPARATOR = frozenset({"<", "<=", ">=", ">"})  # quantity-comparator

REQUIRED: dict[str, frozenset[str]] = {
    # resources
    "Patient.gender": _GENDER,
    "Patient.contact.gender": _GENDER,
    "Patient.link.type": frozenset({"replaced-by", "replaces", "refer", "seealso"}),  # link-type
    "Practitioner.gender": _GENDER,
    "PractitionerRole.availableTime.daysOfWeek": _DAYS_OF_WEEK,
    "RelatedPerson.gender": _GENDER,
    "CareTeam.status": frozenset({"proposed", "active", "suspended", "inactive", "entered-in-error"}),
    "Encounter.status": _ENCOUNTER_STATUS,
    "Encounter.statusHistory.status": _ENCOUNTER_STATUS,
    "Encounter.location.status": frozenset({"planned", "active", "reserved", "completed"}),
    "Flag.status": frozenset({"active", "inactive", "entered-in-error"}),  # flag-status
    "Communication.status": frozenset(
        {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}
    ),  # event-status
    "Communication.priority": _PRIORITY,
    "DocumentReference.status": frozenset({"current", "superseded", "entered-in-error"}),  # document-reference-status
    "DocumentReference.docStatus": frozenset({"preliminary", "final", "amended", "entered-in-error"}),
    "DocumentReference.relatesTo.code": frozenset({"replaces", "transforms", "signs", "appends"}),
    "Task.status": frozenset(
        {"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress", "on-hold",
         "failed", "completed", "entered-in-error"}
    ),  # task-status
    "Task.intent": frozenset(
        {"unknown", "proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order",
         "option"}
    ),  # task-intent
    "Task.priority": _PRIORITY,
    "Subscription.status": frozenset({"requested", "active", "error", "off"}),  # subscription-status
    "Subscription.channel.type": frozenset({"rest-hook", "websocket", "email", "sms", "message"}),
    "AuditEvent.action": frozenset({"C", "R", "U", "D", "E"}),  # audit-event-action
    "AuditEvent.outcome": frozenset({"0", "4", "8", "12"}),  # audit-event-outcome
    "AuditEvent.agent.network.type": frozenset({"1", "2", "3", "4", "5"}),  # network-type
    # data types
    "Identifier.use": frozenset({"usual", "official", "temp", "secondary", "old"}),
    "HumanName.use": frozenset({"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"}),
    "ContactPoint.system": frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"}),
    "ContactPoint.use": frozenset({"home", "work", "temp", "old", "mobile"}),
    "Address.use": frozenset({"home", "work", "temp", "old", "billing"}),
    "Address.type": frozenset({"postal", "physical", "both"}),
    "Narrative.status": frozenset({"generated", "extensions", "additional", "empty"}),
    "Quantity.comparator": _COMPARATOR,
    "Age.comparator": _COMPARATOR,
    "Count.comparator": _COMPARATOR,
    "Distance.comparator": _COMPARATOR,
    "Duration.comparator": _COMPARATOR,
    "Timing.repeat.durationUnit": _UNITS_OF_TIME,
    "Timing.repeat.periodUnit": _UNITS_OF_TIME,
    "Timing.repeat.dayOfWeek": _DAYS_OF_WEEK,
    "Timing.repeat.when": frozenset(
        {"MORN", "MORN.early", "MORN.late", "NOON", "AFT", "AFT.early", "AFT.late", "EVE", "EVE.early", "EVE.late",
         "NIGHT", "PHS", "HS", "WAKE", "C", "CM", "CD", "CV", "AC", "ACM", "ACD", "ACV", "PC", "PCM", "PCD", "PCV"}
    ),  # event-timing
    "RelatedArtifact.type": frozenset(
        {"documentation", "justification", "citation", "predecessor", "successor", "derived-from", "depends-on",
         "composed-of"}
    ),
    "TriggerDefinition.type": frozenset(
        {"named-event", "periodic", "data-changed", "data-added", "data-modified", "data-removed", "data-accessed",
         "data-access-ended"}
    ),
    "DataRequirement.sort.direction": frozenset({"ascending", "descending"}),
    "ParameterDefinition.use": frozenset({"in", "out"}),
    "Contributor.type": frozenset({"author", "editor", "reviewer", "endorser"}),
}

# Bound (required) to http://hl7.org/fhir/ValueSet/mimetypes, i.e. any BCP-13 media type: syntax check.
MIME_TYPE_PATHS = frozenset(
    {"Attachment.contentType", "Binary.contentType", "Signature.targetFormat", "Signature.sigFormat",
     "Subscription.channel.payload"}
)
# `Resource.language` (of every resource type) and `Attachment.language`: preferred, but limited to
# all-languages (BCP-47): syntax check.
LANGUAGE_PATHS = frozenset({"Resource.language", "Attachment.language"})
# `Money.currency`: required, ISO 4217 (currencies): three upper-case letters.
CURRENCY_PATHS = frozenset({"Money.currency"})
