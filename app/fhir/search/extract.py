"""Index values extracted from resource JSON for each search parameter type.

The same functions serve the index writer (search) and the in-memory matcher (subscriptions), so
that a parameter means one thing everywhere (architecture principle 4). Which parts of a datatype a
parameter type looks at follows https://hl7.org/fhir/R4/search.html (token, string, date, reference).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from app.fhir.search.dates import MAX, MIN, parse_range

# Column widths of the index tables (app/storage/tables.py): longer values are clipped on write,
# and search values are clipped the same way, so that they still compare equal.
TOKEN_LEN = 512
REF_TYPE_LEN = 64
REF_ID_LEN = 256
URL_LEN = 1024

RefRow = tuple[str | None, str | None, str | None, str | None, str | None]


def clip(text: str | None, width: int) -> str | None:
    return text[:width] if text is not None else None


def _step(node: Any, head: str) -> Iterator[Any]:
    """Children of `node` named by one path segment: `name`, choice `value[x]`, or `name[key=value]`
    (a `.where(key='value')` filter such as `telecom[system=phone]`)."""
    if head.endswith("[x]"):
        stem = head[:-3]
        for key, value in node.items():
            if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
                yield value
        return
    if head.endswith("]") and "[" in head:
        name, _, cond = head[:-1].partition("[")
        key, _, wanted = cond.partition("=")
        items = node.get(name)
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict) and item.get(key) == wanted:
                yield item
        return
    if head in node:
        yield node[head]


def walk(node: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """Yield every value at `path` below `node`, flattening arrays."""
    if isinstance(node, list):
        for item in node:
            yield from walk(item, path)
        return
    if not path:
        if node is not None:
            yield node
        return
    if not isinstance(node, dict):
        return
    for child in _step(node, path[0]):
        yield from walk(child, path[1:])


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search (https://hl7.org/fhir/R4/search.html#string)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()[:TOKEN_LEN]


def tokens(value: Any) -> Iterator[tuple[str | None, str | None]]:
    """(system, code) pairs of a code, boolean, Coding, CodeableConcept, Identifier or ContactPoint.

    ContactPoint gives (ContactPoint.system, value), as HAPI indexes it, so `telecom=phone|0123` works."""
    pairs: list[tuple[Any, Any]] = []
    if isinstance(value, bool):
        pairs.append((None, "true" if value else "false"))
    elif isinstance(value, str):
        pairs.append((None, value))
    elif isinstance(value, dict):
        if "coding" in value:
            codings = value.get("coding")
            for coding in codings if isinstance(codings, list) else []:
                if isinstance(coding, dict) and ("code" in coding or "system" in coding):
                    pairs.append((coding.get("system"), coding.get("code")))
        elif "code" in value:
            pairs.append((value.get("system"), value.get("code")))
        elif "value" in value:
            pairs.append((value.get("system"), value.get("value")))
    for system, code in pairs:
        system = system if isinstance(system, str) else None
        code = code if isinstance(code, str) else (None if code is None else str(code))
        yield clip(system, TOKEN_LEN), clip(code, TOKEN_LEN)


# HumanName and Address parts a string parameter matches (https://hl7.org/fhir/R4/search.html#string)
_PARTS = ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for part in _PARTS:
            for v in walk(value, (part,)):
                if isinstance(v, str):
                    yield v


def date_ranges(value: Any) -> Iterator[tuple[datetime, datetime]]:
    """[low, high) of a date, dateTime, instant or Period (open ends stretch to MIN/MAX)."""
    if isinstance(value, str):
        rng = parse_range(value)
        if rng:
            yield rng
    elif isinstance(value, dict) and ("start" in value or "end" in value):
        start = parse_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = parse_range(value["end"]) if isinstance(value.get("end"), str) else None
        yield (start[0] if start else MIN), (end[1] if end else MAX)


def split_reference(ref: str, base: str) -> tuple[str | None, str | None, str | None]:
    """`Type/id`, `Type/id/_history/n` or an absolute URL under our base -> (type, id, None);
    any other absolute URL or canonical -> (None, None, url); a bare id -> (None, None, ref)."""
    local = ref
    root = base.rstrip("/") + "/" if base else ""
    if root and ref.startswith(root):
        local = ref[len(root) :]
    elif "://" in ref or ref.startswith("urn:"):
        return None, None, clip(ref, URL_LEN)
    parts = local.split("/")
    if len(parts) >= 2 and parts[0][:1].isupper() and parts[0].isalnum() and parts[1]:
        return clip(parts[0], REF_TYPE_LEN), clip(parts[1], REF_ID_LEN), None
    return None, None, clip(ref, URL_LEN)


def url_type(url: str) -> str | None:
    """The resource type of an absolute RESTful URL `.../Type/id[/_history/n]`, if it looks like one."""
    parts = [p for p in url.split("?")[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalnum():
        return parts[-2]
    return None


def references(value: Any, base: str) -> Iterator[RefRow]:
    """(target_type, target_id, url, identifier.system, identifier.value) per Reference/canonical."""
    if isinstance(value, str):
        yield (*split_reference(value, base), None, None)
        return
    if not isinstance(value, dict):
        return
    ref = value.get("reference")
    ident = value.get("identifier") if isinstance(value.get("identifier"), dict) else None
    isys = ident.get("system") if ident and isinstance(ident.get("system"), str) else None
    ival = ident.get("value") if ident and isinstance(ident.get("value"), str) else None
    isys, ival = clip(isys, TOKEN_LEN), clip(ival, TOKEN_LEN)
    if isinstance(ref, str) and not ref.startswith("#"):
        rtype, rid, url = split_reference(ref, base)
        if rtype is None and url is not None and "/" not in ref and isinstance(value.get("type"), str):
            rtype, rid, url = clip(value["type"], REF_TYPE_LEN), clip(ref, REF_ID_LEN), None
        yield rtype, rid, url, isys, ival
    elif ident:
        rtype = value.get("type") if isinstance(value.get("type"), str) else None
        yield clip(rtype, REF_TYPE_LEN), None, None, isys, ival
