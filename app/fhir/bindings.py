"""Required code bindings of R4 that fhir.resources does not enforce (it accepts `Flag.status`
"bogus"). Values from the R4 ValueSets named in each comment (https://hl7.org/fhir/R4/terminologies.html#required).
Paths are relative to the resource; `*` applies to the data type wherever it appears.
"""

from __future__ import annotations

# resource type -> element path -> allowed codes
REQUIRED: dict[str, dict[tuple[str, ...], frozenset[str]]] = {
    "Flag": {("status",): frozenset({"active", "inactive", "entered-in-error"})},
    "Encounter": {
        ("status",): frozenset(
            {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
             "entered-in-error", "unknown"}
        ),
        ("statusHistory", "status"): frozenset(
            {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
             "entered-in-error", "unknown"}
        ),
        ("location", "status"): frozenset({"planned", "active", "reserved", "completed"}),
    },
    "Communication": {
        ("status",): frozenset(
            {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
             "entered-in-error", "unknown"}
        ),
        ("priority",): frozenset({"routine", "urgent", "asap", "stat"}),
    },
    "Task": {
        ("status",): frozenset(
            {"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
             "in-progress", "on-hold", "failed", "completed", "entered-in-error"}
        ),
        ("intent",): frozenset(
            {"unknown", "proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
             "instance-order", "option"}
        ),
        ("priority",): frozenset({"routine", "urgent", "asap", "stat"}),
    },
    "DocumentReference": {
        ("status",): frozenset({"current", "superseded", "entered-in-error"}),
        ("docStatus",): frozenset({"preliminary", "final", "amended", "entered-in-error"}),
        ("relatesTo", "code"): frozenset({"replaces", "transforms", "signs", "appends"}),
    },
    "CareTeam": {
        ("status",): frozenset({"proposed", "active", "suspended", "inactive", "entered-in-error"}),
    },
    "Subscription": {
        ("status",): frozenset({"requested", "active", "error", "off"}),
        ("channel", "type"): frozenset({"rest-hook", "websocket", "email", "sms", "message"}),
    },
    "Patient": {
        ("gender",): frozenset({"male", "female", "other", "unknown"}),
        ("link", "type"): frozenset({"replaced-by", "replaces", "refer", "seealso"}),
        ("contact", "gender"): frozenset({"male", "female", "other", "unknown"}),
    },
    "Practitioner": {("gender",): frozenset({"male", "female", "other", "unknown"})},
    "RelatedPerson": {("gender",): frozenset({"male", "female", "other", "unknown"})},
    "PractitionerRole": {
        ("availableTime", "daysOfWeek"): frozenset({"mon", "tue", "wed", "thu", "fri", "sat", "sun"}),
    },
    "AuditEvent": {
        ("action",): frozenset({"C", "R", "U", "D", "E"}),
        ("outcome",): frozenset({"0", "4", "8", "12"}),
    },
    "Bundle": {
        ("type",): frozenset(
            {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
             "history", "searchset", "collection"}
        ),
        ("entry", "request", "method"): frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}),
        ("entry", "search", "mode"): frozenset({"match", "include", "outcome"}),
    },
}

# data-type element name -> allowed codes, applied wherever the element occurs in these types
DATATYPE_REQUIRED: dict[str, dict[str, frozenset[str]]] = {
    # Identifier.use (identifier-use), ContactPoint.system/use, HumanName.use, Address.use/type, Narrative.status
    "identifier": {"use": frozenset({"usual", "official", "temp", "secondary", "old"})},
    "telecom": {
        "system": frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"}),
        "use": frozenset({"home", "work", "temp", "old", "mobile"}),
    },
    "name": {"use": frozenset({"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"})},
    "address": {
        "use": frozenset({"home", "work", "temp", "old", "billing"}),
        "type": frozenset({"postal", "physical", "both"}),
    },
    "text": {"status": frozenset({"generated", "extensions", "additional", "empty"})},
}
