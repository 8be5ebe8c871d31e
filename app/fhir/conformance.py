"""The conformance resources of `fhir_profiles/` (StructureDefinition, CodeSystem, ValueSet, SearchParameter,
ConceptMap, OperationDefinition), served read-only: read by id and search by the parameters every canonical resource has
(https://hl7.org/fhir/R4/canonicalresource.html#search: `url`, `name`, `status`, `version`, plus
StructureDefinition `type`, SearchParameter `type`/`base`/`code`, OperationDefinition `code`), as searchset Bundles with the same
paging, `_count`, `_summary`, `_elements` and `_total` handling as any search. Matching is exact (a
comma is OR, a repeated parameter AND; `url` ignores a `|version`). `_sort`, `_include` and
`_revinclude` are not supported here and, like unknown parameters, are ignored with a warning entry
(400 under `Prefer: handling=strict`).

They are the files the server validates with, loaded once (`get_store`): changing one is a change to
the code, so the access policy refuses every write of them (405, app/security/policy.py). `with_conformance` adds them, our profiles per type
(`supportedProfile`) and the subscription topics to the CapabilityStatement.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.errors import BadRequest, Issue, NotFound
from app.fhir import bundles
from app.fhir.profiles import get_store
from app.fhir.search.canonicals import definition
from app.fhir.search.params import RESULT_PARAMS, parse_search
from app.fhir.search.results import SearchResult
from app.stored import StoredResource
from app.vocabulary import BACKPORT, HL7_STRUCTURE_DEFINITION

CONFORMANCE_TYPES = (
    "StructureDefinition", "CodeSystem", "ValueSet", "SearchParameter", "ConceptMap", "OperationDefinition"
)
TOPIC_CANONICAL = BACKPORT + "capabilitystatement-subscriptiontopic-canonical"
# (name, type, documentation) per type: what `ConformanceStore.search` matches
_COMMON = (
    ("url", "uri", "The canonical URL (a |version suffix is ignored)"),
    ("name", "string", "The computable name (exact match)"),
    ("status", "token", "draft | active | retired | unknown"),
    ("version", "token", "The business version"),
)
SEARCH_PARAMS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "StructureDefinition": (*_COMMON, ("type", "uri", "The type the structure constrains or extends")),
    "CodeSystem": _COMMON,
    "ValueSet": _COMMON,
    "SearchParameter": (
        *_COMMON,
        ("type", "token", "number | date | string | token | reference | ..."),
        ("base", "token", "The resource type(s) it applies to"),
        ("code", "token", "The code used in the URL"),
    ),
    "ConceptMap": _COMMON,
    "OperationDefinition": (*_COMMON, ("code", "token", "The name used to invoke the operation")),
}
_NOT_HERE = ("_sort", "_include", "_revinclude")  # result parameters that mean nothing for these files
_LOADED = datetime(1970, 1, 1)  # not shown: searchset entries carry no lastUpdated of their own


def _stored(resource_type: str, resource: dict[str, Any]) -> StoredResource:
    return StoredResource(0, resource_type, str(resource["id"]), 1, _LOADED, False, resource)


def read(resource_type: str, res_id: str) -> dict[str, Any]:
    found = get_store().read(resource_type, res_id)
    if found is None:
        raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
    return found


def search(
    resource_type: str,
    query: list[tuple[str, str]],
    *,
    fhir_base: str,
    default_count: int,
    max_count: int,
    now: datetime,
    strict: bool = False,
) -> dict[str, Any]:
    """`now`: the injected clock's time (the Bundle's `meta.lastUpdated`)."""
    known = {"_id", *(name for name, _t, _d in SEARCH_PARAMS[resource_type])}
    criteria, results, unknown = [], [], []
    for key, value in query:
        bare = key.split(":")[0]
        if key in known:
            criteria.append((key, value))
        elif bare in RESULT_PARAMS and bare not in _NOT_HERE:
            results.append((key, value))
        else:
            unknown.append(key)
    if unknown and strict:
        raise BadRequest(
            issues=[
                Issue(
                    "not-supported",
                    f"Unknown search parameter '{u}' for {resource_type}",
                    expression=(u,),
                    msg_id="SF-0400",
                )
                for u in unknown
            ]
        )
    req = parse_search(
        resource_type, results, base=fhir_base, default_count=default_count, max_count=max_count
    )
    store = get_store()
    found = store.resources(resource_type)
    for key, value in criteria:
        if value:  # an empty value is no criterion, as in any search
            wanted = {r["id"] for r in store.search(resource_type, {key: value})}
            found = [r for r in found if r["id"] in wanted]
    req.query = [(k, v) for k, v in criteria if v] + req.query  # what the paging links repeat
    page = [] if req.summary == "count" else found[req.offset : req.offset + req.count]
    total = None if req.total == "none" else len(found)
    result = SearchResult(req, [_stored(resource_type, r) for r in page], total)
    issues = [
        Issue(
            "not-supported",
            f"Unknown search parameter '{u}' for {resource_type} was ignored",
            "warning",
            (u,),
            "SF-0400",
        )
        for u in unknown
    ]
    return bundles.searchset(result, fhir_base, now=now, extra_issues=issues)


def with_conformance(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CapabilityStatement.rest.resource with our profiles (`supportedProfile`), the subscription topics
    on Subscription (Subscriptions Backport IG extension) and the read-only conformance types."""
    store = get_store()
    profiles = store.profiles_by_type()
    out = []
    for entry in resources:
        entry = dict(entry)
        if entry["type"] in profiles:
            entry["supportedProfile"] = sorted(profiles[entry["type"]])
        if entry["type"] == "Subscription":
            topics = [{"url": TOPIC_CANONICAL, "valueCanonical": url} for url in sorted(store.topics())]
            entry["extension"] = [*entry.get("extension", []), *topics]
        out.append(entry)
    for rtype in CONFORMANCE_TYPES:
        out.append(
            {
                "type": rtype,
                "profile": HL7_STRUCTURE_DEFINITION + rtype,
                "documentation": "SafeFlag's own conformance resources (fhir_profiles/), read-only",
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": [
                    {"name": "_id", "definition": definition(rtype, "_id"), "type": "token"},
                    *({"name": n, "definition": definition(rtype, n), "type": t, "documentation": d}
                      for n, t, d in SEARCH_PARAMS[rtype]),
                ],
            }
        )
    return out
