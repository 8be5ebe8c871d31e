"""Search parameters: defined ONCE here (name, type, FHIRPath-like path, reference targets) and used
for the index writer, the SQL compiler, the subscription matcher and the CapabilityStatement.

Paths are the R4 expressions (https://hl7.org/fhir/R4/searchparameter-registry.html) reduced to
dotted element paths; `targets` stands for `.where(resolve() is X)`. `Flag?status`, `Flag?category`,
`Flag?code` and `RelatedPerson?family`/`given` are our own (R4 has none of them; `fhir_profiles/`
publishes their SearchParameters). Each parameter's canonical URL: app/fhir/search/canonicals.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.fhir.search import extract
from app.stored import IndexRows

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
    # Derived once: the indexer runs on every write. `getters` are the compiled `paths`; `index_kind`
    # the table the values go to (a uri is indexed as a token).
    getters: tuple[extract.Getter, ...] = field(init=False, repr=False, compare=False)
    index_kind: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "getters", tuple(extract.compiled(p) for p in self.paths))
        object.__setattr__(self, "index_kind", "token" if self.type == "uri" else self.type)

    @property
    def expression(self) -> str:
        """The FHIRPath this parameter stands for (as in the R4 registry), for the CapabilityStatement."""
        exprs = []
        for path in self.paths:
            e = self.resource_type
            for seg in path:
                if seg.endswith("]") and "[" in seg and not seg.endswith("[x]"):
                    name, _, cond = seg[:-1].partition("[")
                    key, _, value = cond.partition("=")
                    e += f".{name}.where({key}='{value}')"
                else:
                    e += f".{seg}"
            if len(self.targets) == 1:
                e += f".where(resolve() is {self.targets[0]})"
            exprs.append(e)
        return " | ".join(exprs)


def _p(name: str, type_: str, *paths: str, targets: tuple[str, ...] = (), doc: str = "") -> tuple[Any, ...]:
    return (name, type_, tuple(tuple(p.split(".")) for p in paths), targets, doc)


_COMMON = [
    _p("_security", "token", "meta.security", doc="Security labels"),
    _p("_tag", "token", "meta.tag", doc="Tags"),
    _p("_profile", "uri", "meta.profile", doc="Profiles claimed"),
]

def _subject(path: str) -> list[tuple[Any, ...]]:
    """`subject` and `patient` (the same element when it is a Patient), as R4 defines both."""
    return [_p("patient", "reference", path, targets=("Patient",)), _p("subject", "reference", path)]


_NAMED = [  # HumanName / Address / ContactPoint parameters shared by the person-like types
    _p("name", "string", "name"),
    _p("family", "string", "name.family"),
    _p("given", "string", "name.given"),
    _p("address", "string", "address"),
    _p("address-city", "string", "address.city"),
    _p("address-postalcode", "string", "address.postalCode"),
    _p("telecom", "token", "telecom"),
    _p("phone", "token", "telecom[system=phone]"),
    _p("email", "token", "telecom[system=email]"),
    _p("gender", "token", "gender"),
    _p("active", "token", "active"),
    _p("identifier", "token", "identifier"),
]

_SPEC: dict[str, list[tuple[Any, ...]]] = {
    "Patient": [
        *_NAMED,
        _p("birthdate", "date", "birthDate"),
        _p("death-date", "date", "deceasedDateTime"),
        _p("language", "token", "communication.language"),
        _p("organization", "reference", "managingOrganization", targets=("Organization",)),
        _p("general-practitioner", "reference", "generalPractitioner"),
        _p("link", "reference", "link.other"),
    ],
    "Practitioner": [*_NAMED, _p("communication", "token", "communication")],
    "PractitionerRole": [
        _p("identifier", "token", "identifier"),
        _p("practitioner", "reference", "practitioner", targets=("Practitioner",)),
        _p("organization", "reference", "organization", targets=("Organization",)),
        _p("role", "token", "code"),
        _p("specialty", "token", "specialty"),
        _p("active", "token", "active"),
        _p("date", "date", "period"),
        _p("telecom", "token", "telecom"),
        _p("phone", "token", "telecom[system=phone]"),
        _p("email", "token", "telecom[system=email]"),
        _p("location", "reference", "location"),
        _p("service", "reference", "healthcareService"),
        _p("endpoint", "reference", "endpoint"),
    ],
    "Organization": [
        _p("identifier", "token", "identifier"),
        _p("name", "string", "name", "alias"),
        _p("type", "token", "type"),
        _p("active", "token", "active"),
        _p("partof", "reference", "partOf", targets=("Organization",)),
        _p("address", "string", "address"),
        _p("address-city", "string", "address.city"),
        _p("address-postalcode", "string", "address.postalCode"),
        _p("endpoint", "reference", "endpoint"),
    ],
    "CareTeam": [
        _p("identifier", "token", "identifier"),
        *_subject("subject"),
        _p("participant", "reference", "participant.member"),
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("date", "date", "period"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
    ],
    "RelatedPerson": [
        *_NAMED,
        _p("patient", "reference", "patient", targets=("Patient",)),
        _p("relationship", "token", "relationship"),
        _p("birthdate", "date", "birthDate"),
    ],
    "Encounter": [
        _p("identifier", "token", "identifier"),
        *_subject("subject"),
        _p("class", "token", "class"),
        _p("status", "token", "status"),
        _p("type", "token", "type"),
        _p("date", "date", "period"),
        _p("service-provider", "reference", "serviceProvider", targets=("Organization",)),
        _p("participant", "reference", "participant.individual"),
        _p("practitioner", "reference", "participant.individual", targets=("Practitioner",)),
        _p("participant-type", "token", "participant.type"),
        _p("reason-code", "token", "reasonCode"),
        _p("reason-reference", "reference", "reasonReference"),
        _p("location", "reference", "location.location"),
        _p("episode-of-care", "reference", "episodeOfCare"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf", targets=("Encounter",)),
        _p("special-arrangement", "token", "hospitalization.specialArrangement"),
    ],
    "Flag": [
        _p("identifier", "token", "identifier"),
        *_subject("subject"),
        _p("status", "token", "status", doc="Flag status (SafeFlag extension to R4)"),
        _p("category", "token", "category", doc="Flag category (SafeFlag extension to R4)"),
        _p("code", "token", "code", doc="Flag code (SafeFlag extension to R4)"),
        _p("date", "date", "period"),
        _p("author", "reference", "author"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
    ],
    "Communication": [
        _p("identifier", "token", "identifier"),
        *_subject("subject"),
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
        _p("instantiates-canonical", "reference", "instantiatesCanonical"),
        _p("instantiates-uri", "uri", "instantiatesUri"),
    ],
    "DocumentReference": [
        _p("identifier", "token", "masterIdentifier", "identifier"),
        *_subject("subject"),
        _p("type", "token", "type"),
        _p("category", "token", "category"),
        _p("date", "date", "date"),
        _p("author", "reference", "author"),
        _p("authenticator", "reference", "authenticator"),
        _p("custodian", "reference", "custodian", targets=("Organization",)),
        _p("status", "token", "status"),
        _p("description", "string", "description"),
        _p("relatesto", "reference", "relatesTo.target", targets=("DocumentReference",)),
        _p("relation", "token", "relatesTo.code"),
        _p("encounter", "reference", "context.encounter", targets=("Encounter",)),
        _p("related", "reference", "context.related"),
        _p("period", "date", "context.period"),
        _p("event", "token", "context.event"),
        _p("facility", "token", "context.facilityType"),
        _p("setting", "token", "context.practiceSetting"),
        _p("contenttype", "token", "content.attachment.contentType"),
        _p("format", "token", "content.format"),
        _p("language", "token", "content.attachment.language"),
        _p("location", "uri", "content.attachment.url"),
        _p("security-label", "token", "securityLabel"),
    ],
    "Binary": [],
    "Task": [
        _p("identifier", "token", "identifier"),
        _p("group-identifier", "token", "groupIdentifier"),
        _p("owner", "reference", "owner"),
        _p("focus", "reference", "focus"),
        _p("status", "token", "status"),
        _p("code", "token", "code"),
        *_subject("for"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
        _p("authored-on", "date", "authoredOn"),
        _p("period", "date", "executionPeriod"),
        _p("modified", "date", "lastModified"),
        _p("requester", "reference", "requester"),
        _p("performer", "token", "performerType"),
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
        # R4: AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)
        _p("patient", "reference", "agent.who", "entity.what", targets=("Patient",)),
        _p("entity", "reference", "entity.what"),
        _p("entity-name", "string", "entity.name"),
        _p("entity-type", "token", "entity.type"),
        _p("entity-role", "token", "entity.role"),
        _p("agent", "reference", "agent.who"),
        _p("agent-name", "string", "agent.name"),
        _p("agent-role", "token", "agent.role"),
        _p("altid", "token", "agent.altId"),
        _p("address", "string", "agent.network.address"),
        _p("policy", "uri", "agent.policy"),
        _p("date", "date", "recorded"),
        _p("type", "token", "type"),
        _p("subtype", "token", "subtype"),
        _p("action", "token", "action"),
        _p("outcome", "token", "outcome"),
        _p("site", "token", "source.site"),
        _p("source", "reference", "source.observer"),
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


def _unique(rows: list[Any]) -> list[Any]:
    return list(dict.fromkeys(rows)) if len(rows) > 1 else rows


def _rows(kind: str, values: list[Any], base: str) -> list[tuple[Any, ...]]:
    """The index rows of the values found at one path, repeats kept. (Loops, not comprehensions:
    this runs for every parameter of every write, mostly on one value.)"""
    out: list[tuple[Any, ...]] = []
    if kind == "token":
        for value in values:
            out += extract.tokens(value)
    elif kind == "reference":
        for value in values:
            out += extract.references(value, base)
    elif kind == "string":
        for value in values:
            for text in extract.strings(value):
                out.append((extract.normalize(text), text))
    else:
        for value in values:
            out += extract.date_ranges(value)
    return out


def _is_target(row: tuple[Any, ...], targets: tuple[str, ...]) -> bool:
    """`.where(resolve() is X)`: a reference to another type is not this parameter's."""
    rtype = row[0] or (extract.url_type(row[2]) if row[2] else None)
    return rtype is None or rtype in targets


Memo = dict[tuple[extract.Getter, str], list[tuple[Any, ...]]]


def index_values(
    param: SearchParam, content: dict[str, Any], base: str, memo: Memo | None = None
) -> list[tuple[Any, ...]]:
    """What `param` holds for `content`, as index rows without the parameter name: token (system, code),
    string (normalized, exact), date (low, high), reference (type, id, url, identifier system/value).
    The index writer stores these; the matcher compares against the very same values. `memo` keeps
    the rows of each path, for parameters that read the same element (`subject` and `patient`)."""
    kind = param.index_kind
    out: list[tuple[Any, ...]] = []
    for path in param.getters:
        rows = memo.get((path, kind)) if memo is not None else None
        if rows is None:
            values = path(content)
            rows = _rows(kind, values, base) if values else []
            if memo is not None:
                memo[(path, kind)] = rows
        out = out + rows if out else rows  # never extends `rows`: the memo may hold it
    if param.targets and out:
        out = [row for row in out if _is_target(row, param.targets)]
    return _unique(out)


def reference_values(param: SearchParam, content: dict[str, Any], base: str) -> list[extract.RefRow]:
    """`index_values` of a reference parameter: (type, id, url, identifier system, identifier value)."""
    return index_values(param, content, base)


def make_indexer(base: str) -> Any:
    """Return an `Indexer` (resource type, JSON) -> IndexRows bound to our public FHIR base.

    Per resource type it lists once which table each parameter fills, the element its path starts
    at (absent: nothing to extract) and whether another parameter reads the same path."""
    kinds = ("token", "string", "date", "reference")
    plans = {}
    for rtype, params in REGISTRY.items():
        uses = Counter((path, p.index_kind) for p in params.values() for path in p.getters)
        plans[rtype] = [
            (p, kinds.index(p.index_kind), extract.root_element(p.paths[0]) if len(p.paths) == 1 else None,
             any(uses[(path, p.index_kind)] > 1 for path in p.getters))
            for p in params.values()
        ]

    def index(resource_type: str, content: dict[str, Any]) -> IndexRows:
        rows = IndexRows()
        tables: tuple[list[Any], ...] = (rows.tokens, rows.strings, rows.dates, rows.references)
        memo: Memo = {}
        probe = content.get if isinstance(content, dict) else None
        for param, table, root, shared in plans.get(resource_type, ()):
            if root is not None and probe is not None and probe(root) is None:
                continue
            found = index_values(param, content, base, memo if shared else None)
            if found:
                name = (param.name,)
                add = tables[table].append
                for v in found:
                    add(name + v)
        return rows

    return index
