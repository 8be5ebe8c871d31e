"""Bundles the server returns: searchset and history, with paging links under SAFEFLAG_BASE_URL
(https://hl7.org/fhir/R4/bundle.html, https://hl7.org/fhir/R4/http.html#paging)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from app.errors import Issue, operation_outcome
from app.fhir.resources import element_defs, model_class
from app.fhir.search.results import SearchResult
from app.stored import StoredResource, VersionRecord, format_instant

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")
_LINK_SAFE = ":/,$@"  # left readable in paging links; everything else is percent-encoded


def full_url(fhir_base: str, resource_type: str, res_id: str) -> str:
    return f"{fhir_base}/{resource_type}/{res_id}"


def transient_entry(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """A searchset entry for a resource that is made for the answer and stored nowhere (an
    OperationOutcome, a SubscriptionStatus): its UUID `id` (a fresh one if it has none) and `fullUrl`
    `urn:uuid:<id>` (a fullUrl may be a URN, https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.fullUrl).
    R4 lets an unidentified resource go without a fullUrl, but validators (HAPI's among them) want one on
    every non-batch entry."""
    rid = str(resource.get("id") or uuid.uuid4())
    body = {"resourceType": resource["resourceType"], "id": rid, **{k: v for k, v in resource.items() if k != "id"}}
    return {"fullUrl": f"urn:uuid:{rid}", "resource": body, "search": {"mode": mode}}


def outcome_entry(issues: list[Issue]) -> dict[str, Any]:
    """A searchset's `search.mode=outcome` entry."""
    return transient_entry(operation_outcome(issues), "outcome")


@lru_cache(maxsize=64)
def mandatory_elements(resource_type: str) -> frozenset[str]:
    """Top-level elements with minimum cardinality 1, which `_elements` keeps whether asked or not
    (https://hl7.org/fhir/R4/search.html#elements), read from the R4 model."""
    try:
        model = model_class(resource_type)
    except (KeyError, ValueError, LookupError):
        return frozenset()
    return frozenset(
        f.alias or name
        for name, f in model.model_fields.items()
        if f.is_required() or (f.json_schema_extra or {}).get("element_required")
    )


@lru_cache(maxsize=256)
def summary_elements(type_name: str) -> tuple[frozenset[str], dict[str, str]]:
    """The elements of a resource or backbone type that R4 marks `isSummary`, as fhir.resources' models
    carry them (`summary_element_property`; for the 14 types served here the same as the R4 4.0.1
    StructureDefinitions), and the backbone types among them by JSON name (their own summary applies)."""
    fields = model_class(type_name).model_fields
    names = frozenset(
        f.alias or name for name, f in fields.items() if (f.json_schema_extra or {}).get("summary_element_property")
    )
    defs = element_defs(type_name)
    return names, {n: defs[n].type for n in names if n in defs and defs[n].nested}


def _summary(node: dict[str, Any], type_name: str) -> dict[str, Any]:
    """`_summary=true`: only the summary elements, also inside the backbone elements kept."""
    names, backbones = summary_elements(type_name)
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = key.removeprefix("_")  # a primitive's id/extensions follow its value
        if key != "resourceType" and name not in names:
            continue
        inner = backbones.get(key)
        if inner is None:
            out[key] = value
        elif isinstance(value, list):
            out[key] = [_summary(v, inner) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, dict):
            out[key] = _summary(value, inner)
    return out


def subset(content: dict[str, Any], elements: list[str] | None, summary: str | None) -> dict[str, Any]:
    """Apply `_elements` or `_summary` (https://hl7.org/fhir/R4/search.html#summary), marking the copy
    SUBSETTED as R4 asks: `true` keeps the summary elements, `text` text, id, meta and the mandatory
    top-level elements, `data` all but text."""
    if not elements and summary not in ("true", "text", "data"):
        return content
    rtype = str(content.get("resourceType"))
    if elements or summary == "text":
        keep = set(elements or ("text",)) | set(_ALWAYS) | mandatory_elements(rtype)
        # a primitive's extensions travel in `_name` (https://hl7.org/fhir/R4/json.html#primitive)
        out = {k: v for k, v in content.items() if k in keep or (k.startswith("_") and k[1:] in keep)}
    elif summary == "true":
        try:
            out = _summary(content, rtype)
        except (KeyError, ValueError, LookupError):  # not a type the models know: nothing to leave out
            out = dict(content)
    else:
        out = {k: v for k, v in content.items() if k != "text"}
    meta = dict(out.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if SUBSETTED not in tags:
        tags.append(SUBSETTED)
    meta["tag"] = tags
    out["meta"] = meta
    return out


def _pager(fhir_base: str, path: str, query: list[tuple[str, str]], count: int) -> Callable[[int], str]:
    """Page URLs: the query as applied, then `_count` and (after the first page) `_offset`. The query is
    encoded once for all of a bundle's links (percent-encoding is most of what building them costs)."""
    kept = urlencode([(k, v) for k, v in query if k not in ("_count", "_offset")], safe=_LINK_SAFE)
    head = f"{fhir_base}/{path}?{kept}{'&' if kept else ''}_count={count}"

    def link(offset: int) -> str:
        return f"{head}&_offset={offset}" if offset else head

    return link


def _paging_links(result: SearchResult, fhir_base: str) -> list[dict[str, str]]:
    """self/first/previous/next/last (https://hl7.org/fhir/R4/http.html#paging): `_offset` pages over the
    stable order of `app/search/sql.py` `page_query`, so following `next` visits every match exactly once."""
    req = result.request
    url = _pager(fhir_base, req.resource_type, req.query, req.count)

    def link(relation: str, offset: int) -> dict[str, str]:
        return {"relation": relation, "url": url(offset)}

    links = [link("self", req.offset)]
    if req.summary == "count" or req.count == 0:
        return links
    links.append(link("first", 0))
    if req.offset > 0:
        links.append(link("previous", max(0, req.offset - req.count)))
    shown = req.offset + len(result.matches)
    if result.total > shown if result.total is not None else len(result.matches) == req.count:
        links.append(link("next", req.offset + req.count))
    if result.total:
        links.append(link("last", ((result.total - 1) // req.count) * req.count))
    return links


def searchset(
    result: SearchResult, fhir_base: str, *, now: datetime, extra_issues: list[Issue] | None = None
) -> dict[str, Any]:
    """`now`: the injected clock's time the Bundle is made at (`meta.lastUpdated`)."""
    req = result.request
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": _instant(now)},
        "type": "searchset",
    }
    if result.total is not None:
        bundle["total"] = result.total
    links = _paging_links(result, fhir_base)
    bundle["link"] = links
    entries: list[dict[str, Any]] = []
    for res in result.matches:
        entries.append(_entry(res, fhir_base, "match", req.elements, req.summary))
    for res in result.included:
        entries.append(_entry(res, fhir_base, "include", req.elements, req.summary))
    issues = list(extra_issues or [])
    if result.includes_truncated:
        issues.append(
            Issue("too-costly", "Included resources were truncated at the server's limit", "warning", msg_id="SF-0420")
        )
    if issues:
        entries.append(outcome_entry(issues))
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(
    res: StoredResource, fhir_base: str, mode: str, elements: list[str] | None, summary: str | None
) -> dict[str, Any]:
    return {
        "fullUrl": full_url(fhir_base, res.resource_type, res.id),
        "resource": subset(res.content, elements if mode == "match" else None, summary),
        "search": {"mode": mode},
    }


def history(
    records: list[VersionRecord],
    total: int,
    fhir_base: str,
    self_path: str,
    query: list[tuple[str, str]],
    offset: int,
    count: int,
    *,
    now: datetime,
) -> dict[str, Any]:
    """`now`: the injected clock's time the Bundle is made at (`meta.lastUpdated`)."""
    link = _pager(fhir_base, self_path, query, count)
    links = [{"relation": "self", "url": link(offset)}]
    if offset > 0:
        links.append({"relation": "previous", "url": link(max(0, offset - count))})
    if total > offset + len(records):
        links.append({"relation": "next", "url": link(offset + count)})
    entries = []
    for rec in records:
        url = full_url(fhir_base, rec.resource_type, rec.id)
        entry: dict[str, Any] = {"fullUrl": url}
        if rec.content is not None:
            entry["resource"] = rec.content
        if rec.method == "DELETE":
            request = {"method": "DELETE", "url": f"{rec.resource_type}/{rec.id}"}
            status = "204 No Content"
        elif rec.method == "POST":
            request = {"method": "POST", "url": rec.resource_type}
            status = "201 Created"
        else:
            request = {"method": "PUT", "url": f"{rec.resource_type}/{rec.id}"}
            status = "201 Created" if rec.version_id == 1 else "200 OK"
        entry["request"] = request
        entry["response"] = {
            "status": status,
            "etag": f'W/"{rec.version_id}"',
            "lastModified": format_instant(rec.last_updated),
        }
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": _instant(now)},
        "type": "history",
        "total": total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle


def _instant(now: datetime) -> str:
    return format_instant(now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now)
