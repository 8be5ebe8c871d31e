"""The request side of a batch or transaction Bundle (https://hl7.org/fhir/R4/http.html#transaction):
the envelope checks, what each `entry.request` asks for, and the rewriting of `urn:uuid:` and
conditional references (https://hl7.org/fhir/R4/bundle.html#references).

Envelope faults (not a Bundle, a type other than batch/transaction, an entry without a method or a
usable URL, a POST/PUT/PATCH without a resource) make the whole request 400, all listed at once,
before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from app.errors import BadRequest, Issue, PayloadTooLarge
from app.fhir.ids import ID_RE

_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})")

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
KINDS = {"batch": "batch-response", "transaction": "transaction-response"}
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
CONDITIONAL_REF_RE = re.compile(r"^[A-Z][A-Za-z]+\?.+")
PLACEHOLDER_PREFIXES = ("urn:uuid:", "urn:oid:")


@dataclass
class Entry:
    """One `Bundle.entry` and the interaction its request names (read, vread, search, history,
    create, update, patch, delete); `query` holds conditional criteria or search parameters."""

    index: int
    method: str
    url: str
    interaction: str
    resource_type: str | None
    res_id: str | None = None
    version: str | None = None
    query: list[tuple[str, str]] = field(default_factory=list)
    resource: Any = None
    full_url: str | None = None
    if_match: str | None = None
    if_none_match: str | None = None
    if_none_exist: str | None = None
    if_modified_since: datetime | None = None  # `request.ifModifiedSince`, an instant

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _issue(text: str, expression: str, msg_id: str, code: str = "invalid") -> Issue:
    return Issue(code, text, expression=(expression,), msg_id=msg_id)


def parse_bundle(body: Any, fhir_base: str, max_entries: int | None = None) -> tuple[str, list[Entry]]:
    """(bundle type, entries) or BadRequest listing every envelope fault; more than `max_entries`
    entries, or search criteria over all search entries, is 413 `too-costly` (a Bundle runs in one
    database transaction: on SQLite every other request waits for it)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise BadRequest(
            "POST [base] takes a Bundle of type batch or transaction",
            msg_id="SF-0600",
            expression="resourceType",
        )
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in KINDS:  # a JSON object here is unhashable
        raise BadRequest(
            f"Bundle.type must be batch or transaction, not {kind!r}",
            msg_id="SF-0621",
            expression="Bundle.type",
            code="value",
        )
    raw_entries = body.get("entry", [])
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry must be an array", msg_id="SF-0622", expression="Bundle.entry")
    if max_entries is not None and len(raw_entries) > max_entries:
        raise PayloadTooLarge(f"The Bundle has {len(raw_entries)} entries; a {kind} takes at most {max_entries}: "
                              "split it", msg_id="SF-0433", expression="Bundle.entry")
    issues: list[Issue] = []
    entries = []
    for i, raw in enumerate(raw_entries):
        entry = _parse_entry(i, raw, fhir_base, issues)
        if entry is not None:
            entries.append(entry)
    if kind == "transaction":
        issues.extend(_duplicates(entries))
    if issues:
        raise BadRequest(issues=issues)
    if max_entries is not None:
        _check_search_criteria(entries, max_entries)
    return kind, entries


_NOT_COUNTED = ("_count", "_offset", "_format", "_pretty", "_summary", "_total", "_elements")


def _check_search_criteria(entries: list[Entry], most: int) -> None:
    """The search entries of one Bundle together take at most `most` criteria (as one search counts
    them), so that a Bundle of costly searches holds the database no longer than a few searches would:
    each entry alone is bounded as any search, but a hundred of the costliest ones in a batch held
    SQLite's one connection for half a minute."""
    total = sum(
        len(value.split(",")) if key.split(":")[0] in ("_sort", "_include", "_revinclude") else 1
        for e in entries if e.interaction == "search"
        for key, value in e.query if key.split(":")[0] not in _NOT_COUNTED
    )
    if total > most:
        raise PayloadTooLarge(f"The Bundle's search entries have {total} criteria together; a Bundle takes at most "
                              f"{most}: split it", msg_id="SF-0434", expression="Bundle.entry")


def _parse_entry(i: int, raw: Any, fhir_base: str, issues: list[Issue]) -> Entry | None:
    where = f"Bundle.entry[{i}]"
    if not isinstance(raw, dict):
        issues.append(_issue(f"{where} must be an object", where, "SF-0622"))
        return None
    request = raw.get("request")
    if not isinstance(request, dict):
        issues.append(_issue(f"{where} has no request", f"{where}.request", "SF-0623", "required"))
        return None
    method, url = request.get("method"), request.get("url")
    if method not in METHODS:
        issues.append(
            _issue(
                f"{where}.request.method must be one of {', '.join(METHODS)}, not {method!r}",
                f"{where}.request.method",
                "SF-0624",
                "value",
            )
        )
        return None
    if not isinstance(url, str) or not url.strip():
        issues.append(
            _issue(f"{where}.request.url is missing", f"{where}.request.url", "SF-0625", "required")
        )
        return None
    target = parse_url(method, url, fhir_base)
    if target is None:
        issues.append(
            _issue(
                f"{where}.request.url '{url}' is not a valid URL for {method}",
                f"{where}.request.url",
                "SF-0625",
                "value",
            )
        )
        return None
    interaction, rtype, res_id, version, query = target
    resource = raw.get("resource")
    if method in ("POST", "PUT", "PATCH") and interaction != "search" and not isinstance(resource, dict):
        issues.append(
            _issue(f"{where} ({method} {url}) needs a resource", f"{where}.resource", "SF-0626", "required")
        )
        return None
    # a precondition that is present but not a string must fail, never be dropped
    strings = {"fullUrl": (raw, f"{where}.fullUrl")}
    strings |= {k: (request, f"{where}.request.{k}")
                for k in ("ifMatch", "ifNoneMatch", "ifNoneExist", "ifModifiedSince")}
    values: dict[str, str | None] = {}
    for key, (holder, expression) in strings.items():
        value = holder.get(key)
        if value is not None and not isinstance(value, str):
            issues.append(_issue(f"{expression} must be a string", expression, "SF-0631", "value"))
            return None
        values[key] = value
    since = _instant(values["ifModifiedSince"])
    if values["ifModifiedSince"] is not None and since is None:
        expression = f"{where}.request.ifModifiedSince"
        issues.append(_issue(f"{expression} '{values['ifModifiedSince'][:40]}' is not a FHIR instant "
                             "(e.g. 2026-01-05T09:00:01.000+00:00)", expression, "SF-0631", "value"))
        return None
    return Entry(
        i,
        method,
        url,
        interaction,
        rtype,
        res_id,
        version,
        query,
        resource,
        values["fullUrl"],
        values["ifMatch"],
        values["ifNoneMatch"],
        values["ifNoneExist"],
        since,
    )


def _instant(text: str | None) -> datetime | None:
    """The end of the millisecond a FHIR instant names (https://hl7.org/fhir/R4/datatypes.html#instant:
    date, time and zone; a lastModified is lastUpdated to the millisecond), aware UTC."""
    if text is None or not _INSTANT.fullmatch(text):
        return None
    try:
        found = datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:  # the pattern allows 31 February
        return None
    return found.replace(microsecond=found.microsecond // 1000 * 1000 + 999)


def parse_url(
    method: str, url: str, fhir_base: str
) -> tuple[str, str | None, str | None, str | None, list[tuple[str, str]]] | None:
    """`entry.request.url` -> (interaction, type, id, version, query), or None when the URL cannot
    name that interaction. Absolute URLs must be under this server's base."""
    path, _, raw_query = url.strip().partition("?")
    if "://" in path:
        if not path.startswith(fhir_base.rstrip("/") + "/"):
            return None
        path = path[len(fhir_base.rstrip("/")) + 1 :]
    path = path.lstrip("/")
    query = parse_qsl(raw_query, keep_blank_values=True)
    parts = path.split("/") if path else []
    if parts == ["_history"] and method == "GET":
        return "history", None, None, None, query
    if not parts or not _TYPE_RE.match(parts[0]) or len(parts) > 4:
        return None
    rtype = parts[0]
    rest = parts[1:]
    if not rest:
        by_method = {"GET": "search", "HEAD": "search", "POST": "create"}
        if method in by_method:
            return by_method[method], rtype, None, None, query
        # PUT, PATCH and DELETE on a type are conditional: they need criteria
        return (
            ({"PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method], rtype, None, None, query)
            if query
            else None
        )
    if rest == ["_search"] and method in ("GET", "POST"):
        return "search", rtype, None, None, query
    if rest == ["_history"] and method == "GET":
        return "history", rtype, None, None, query
    if not ID_RE.match(rest[0]):
        return None
    res_id = rest[0]
    if len(rest) == 1:
        by_method = {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        return (by_method[method], rtype, res_id, None, []) if method in by_method else None
    if rest[1] == "_history" and method in ("GET", "HEAD"):
        if len(rest) == 2 and method == "GET":
            return "history", rtype, res_id, None, query
        if len(rest) == 3:
            return "vread", rtype, res_id, rest[2], []
    return None


def _duplicates(entries: list[Entry]) -> list[Issue]:
    """A transaction may not name one fullUrl twice, nor write one resource twice (R4 transaction rules)."""
    issues = []
    seen_urls: dict[str, int] = {}
    seen_targets: dict[tuple[str, str], int] = {}
    for e in entries:
        if e.full_url is not None:
            if e.full_url in seen_urls:
                issues.append(
                    _issue(
                        f"fullUrl '{e.full_url}' is used by Bundle.entry[{seen_urls[e.full_url]}] "
                        f"and {e.where}",
                        f"{e.where}.fullUrl",
                        "SF-0627",
                        "duplicate",
                    )
                )
            seen_urls.setdefault(e.full_url, e.index)
        if e.res_id is not None and e.method in ("PUT", "PATCH", "DELETE"):
            key = (e.resource_type or "", e.res_id)
            if key in seen_targets:
                issues.append(duplicate_target(e, f"{key[0]}/{key[1]}", seen_targets[key]))
            seen_targets.setdefault(key, e.index)
    return issues


def duplicate_target(entry: Entry, target: str, first: int) -> Issue:
    return _issue(
        f"{target} is changed by Bundle.entry[{first}] and {entry.where}; a transaction may change "
        "a resource only once",
        f"{entry.where}.request.url",
        "SF-0628",
        "duplicate",
    )


def is_placeholder(ref: str) -> bool:
    return ref.startswith(PLACEHOLDER_PREFIXES)


def conditional_references(node: Any) -> set[str]:
    """Every `Reference.reference` of the form `Type?criteria` below `node`."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and CONDITIONAL_REF_RE.match(value):
                found.add(value)
            else:
                found |= conditional_references(value)
    elif isinstance(node, list):
        for item in node:
            found |= conditional_references(item)
    return found


def rewrite_references(
    node: Any, targets: dict[str, str], unresolved: list[tuple[str, str]], path: str
) -> Any:
    """A copy of `node` with placeholder (`urn:uuid:`) and conditional references replaced by
    `Type/id`: in `Reference.reference`, in `url` (an Attachment.url pointing at a Binary of the
    Bundle) and inside the narrative. Placeholders that name no entry are collected in `unresolved`
    as (element path, reference)."""
    if isinstance(node, list):
        return [rewrite_references(item, targets, unresolved, f"{path}[{i}]") for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("reference", "url") and isinstance(value, str) and value in targets:
            out[key] = targets[value]
        elif key == "reference" and isinstance(value, str) and is_placeholder(value):
            unresolved.append((f"{path}.{key}", value))
            out[key] = value
        elif key == "div" and isinstance(value, str):
            for placeholder, target in targets.items():
                if is_placeholder(placeholder) and placeholder in value:
                    value = value.replace(placeholder, target)
            out[key] = value
        else:
            out[key] = rewrite_references(value, targets, unresolved, f"{path}.{key}")
    return out
