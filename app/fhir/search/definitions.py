"""Search parameters: defined ONCE here (name, type, FHIRPath-like path, reference targets) and used
for the index writer, the SQL compiler, the subscription matcher and the CapabilityStatement.

Paths are the R4 expressions (https://hl7.org/fhir/R4/searchparameter-registry.html) reduced to
dotted element paths; `targets` stands for `.where(resolve() is X)`. `Flag?status` and
`Flag?category` are our own (R4 has neither; `fhir_profiles/` publishes their SearchParameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.fhir.search import extract
from app.storage.repository import IndexRows

SUPPORTED_TYPES = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "CareTeam",
    "RelatedPerson",
    "Encounter",
    "Flag",
    "Communication",
    "DocumentReference",
    "Binary",
    "Task",
    "Subscription",
    "AuditEvent",
)


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # token | string | reference | date | uri
    resource_type: str
    paths: tuple[tuple[str, ...], ...]
    targets: tuple[str, ...] = ()
    description: str = ""

    @property
    def expression(self) -> str:
        exprs = []
        for path in self.paths:
            e = f"{self.resource_type}." + ".".join(path)
            if self.targets and len(self.targets) == 1:
                e += f".where(resolve() is {self.targets[0]})"
            exprs.append(e)
        return " | ".join(exprs)

    @property
    def index_kind(self) -> str:
        return "token" if self.type == "uri" else self.type


def _p(name: str, type_: str, *paths: str, targets: tuple[str, ...] = (), doc: str = "") -> tuple[Any, ...]:
    return (name, type_, tuple(tuple(p.split(".")) for p in paths), targets, doc)


_PERSONISH = ("Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Organization", "CareTeam")

_COMMON = [
    _p("_security", "token", "meta.security", doc="Security labels"),
    _p("_tag", "token", "meta.tag", doc="Tags"),
    _p("_profile", "uri", "meta.profile", doc="Profiles claimed"),
]

_SPEC: dict[str, list[tuple[Any, ...]]] = {
    "Patient": [
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("birthdate", "date", "birthDate"),
        _p("gender", "token", "gender"),
        _p("active", "token", "active"),
        _p("telecom", "token", "telecom"),
        _p("address-postalcode", "string", "address.postalCode"),
        _p("organization", "reference", "managingOrganization", targets=("Organization",)),
        _p("general-practitioner", "reference", "generalPractitioner"),
        _p("link", "reference", "link.other"),
    ],
    "Practitioner": [
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("active", "token", "active"),
        _p("telecom", "token", "telecom"),
    ],
    "PractitionerRole": [
        _p("identifier", "token", "identifier"),
        _p("practitioner", "reference", "practitioner", targets=("Practitioner",)),
        _p("organization", "reference", "organization", targets=("Organization",)),
        _p("role", "token", "code"),
        _p("specialty", "token", "specialty"),
        _p("active", "token", "active"),
        _p("telecom", "token", "telecom"),
    ],
    "Organization": [
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name", "alias"),
        _p("type", "token", "type"),
        _p("active", "token", "active"),
        _p("partof", "reference", "partOf", targets=("Organization",)),
    ],
    "CareTeam": [
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "subject", targets=("Patient",)),
        _p("subject", "reference", "subject"),
        _p("participant", "reference", "participant.member"),
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("date", "date", "period"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
    ],
    "RelatedPerson": [
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "patient", targets=("Patient",)),
        _p("name", "string", "name"),
        _p("relationship", "token", "relationship"),
        _p("active", "token", "active"),
        _p("birthdate", "date", "birthDate"),
        _p("gender", "token", "gender"),
    ],
    "Encounter": [
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "subject", targets=("Patient",)),
        _p("subject", "reference", "subject"),
        _p("class", "token", "class"),
        _p("status", "token", "status"),
        _p("type", "token", "type"),
        _p("date", "date", "period"),
        _p("service-provider", "reference", "serviceProvider", targets=("Organization",)),
        _p("participant", "reference", "participant.individual"),
        _p("reason-code", "token", "reasonCode"),
    ],
    "Flag": [
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "subject", targets=("Patient",)),
        _p("subject", "reference", "subject"),
        _p("status", "token", "status", doc="Flag status (SafeFlag extension to R4)"),
        _p("category", "token", "category", doc="Flag category (SafeFlag extension to R4)"),
        _p("code", "token", "code"),
        _p("date", "date", "period"),
        _p("author", "reference", "author"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
    ],
    "Communication": [
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "subject", targets=("Patient",)),
        _p("subject", "reference", "subject"),
        _p("recipient", "reference", "recipient"),
        _p("sender", "reference", "sender"),
        _p("category", "token", "category"),
        _p("status", "token", "status"),
        _p("sent", "date", "sent"),
        _p("received", "date", "received"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
        _p("medium", "token", "medium"),
    ],
    "DocumentReference": [
        _p("identifier", "token", "identifier", "masterIdentifier"),
        _p("patient", "reference", "subject", targets=("Patient",)),
        _p("subject", "reference", "subject"),
        _p("type", "token", "type"),
        _p("category", "token", "category"),
        _p("date", "date", "date"),
        _p("author", "reference", "author"),
        _p("custodian", "reference", "custodian", targets=("Organization",)),
        _p("status", "token", "status"),
        _p("relatesto", "reference", "relatesTo.target", targets=("DocumentReference",)),
        _p("relation", "token", "relatesTo.code"),
        _p("encounter", "reference", "context.encounter"),
        _p("period", "date", "context.period"),
        _p("contenttype", "token", "content.attachment.contentType"),
        _p("security-label", "token", "securityLabel"),
    ],
    "Binary": [],
    "Task": [
        _p("identifier", "token", "identifier"),
        _p("owner", "reference", "owner"),
        _p("focus", "reference", "focus"),
        _p("status", "token", "status"),
        _p("code", "token", "code"),
        _p("patient", "reference", "for", targets=("Patient",)),
        _p("subject", "reference", "for"),
        _p("authored-on", "date", "authoredOn"),
        _p("period", "date", "executionPeriod"),
        _p("modified", "date", "lastModified"),
        _p("requester", "reference", "requester"),
        _p("intent", "token", "intent"),
        _p("priority", "token", "priority"),
        _p("business-status", "token", "businessStatus"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf", targets=("Task",)),
    ],
    "Subscription": [
        _p("status", "token", "status"),
        _p("url", "uri", "channel.endpoint"),
        _p("type", "token", "channel.type"),
        _p("payload", "token", "channel.payload"),
        _p("criteria", "string", "criteria"),
        _p("contact", "token", "contact"),
    ],
    "AuditEvent": [
        _p("patient", "reference", "entity.what", targets=("Patient",)),
        _p("entity", "reference", "entity.what"),
        _p("agent", "reference", "agent.who"),
        _p("date", "date", "recorded"),
        _p("type", "token", "type"),
        _p("subtype", "token", "subtype"),
        _p("action", "token", "action"),
        _p("outcome", "token", "outcome"),
        _p("site", "token", "source.site"),
        _p("source", "reference", "source.observer"),
        _p("entity-type", "token", "entity.type"),
        _p("entity-role", "token", "entity.role"),
        _p("altid", "token", "agent.altId"),
        _p("policy", "uri", "agent.policy"),
    ],
}

REGISTRY: dict[str, dict[str, SearchParam]] = {
    rtype: {
        name: SearchParam(name, type_, rtype, paths, targets, doc)
        for name, type_, paths, targets, doc in [*specs, *_COMMON]
    }
    for rtype, specs in _SPEC.items()
}

# Parameters evaluated on the resource table itself rather than an index table.
SPECIAL = {"_id": "token", "_lastUpdated": "date"}


def params_for(resource_type: str) -> dict[str, SearchParam]:
    return REGISTRY.get(resource_type, {})


def values_of(param: SearchParam, content: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for path in param.paths:
        out.extend(extract.walk(content, path))
    return out


def reference_values(
    param: SearchParam, content: dict[str, Any], base: str
) -> list[tuple[str | None, str | None, str | None, str | None, str | None]]:
    out = []
    for value in values_of(param, content):
        for rtype, rid, url, isys, ival in extract.references(value, base):
            if param.targets and rtype is not None and rtype not in param.targets:
                continue
            out.append((rtype, rid, url, isys, ival))
    return out


def make_indexer(base: str) -> Any:
    """Return an `Indexer` (resource type, JSON) -> IndexRows bound to our public FHIR base."""

    def index(resource_type: str, content: dict[str, Any]) -> IndexRows:
        rows = IndexRows()
        for param in params_for(resource_type).values():
            kind = param.index_kind
            if kind == "reference":
                for rtype, rid, url, isys, ival in reference_values(param, content, base):
                    rows.references.append((param.name, rtype, rid, url, isys, ival))
                continue
            for value in values_of(param, content):
                if kind == "token":
                    for system, code in extract.tokens(value):
                        rows.tokens.append((param.name, system, code))
                elif kind == "string":
                    for text in extract.strings(value):
                        rows.strings.append((param.name, extract.normalize(text), text))
                elif kind == "date":
                    for low, high in extract.date_ranges(value):
                        rows.dates.append((param.name, low, high))
        return rows

    return index
