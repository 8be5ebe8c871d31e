"""Index values extracted from resource JSON for each search parameter type.

The same functions serve the index writer (search) and the in-memory matcher (subscriptions), so
that a parameter means one thing everywhere (architecture principle 4).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from app.fhir.search.dates import MAX, MIN, parse_range


def walk(node: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """Yield every value at `path` below `node`, flattening arrays; `x[x]` matches choice types."""
    if not path:
        if isinstance(node, list):
            yield from node
        else:
            yield node
        return
    if isinstance(node, list):
        for item in node:
            yield from walk(item, path)
        return
    if not isinstance(node, dict):
        return
    head, rest = path[0], path[1:]
    if head.endswith("[x]"):
        stem = head[:-3]
        for key, value in node.items():
            if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
                yield from walk(value, rest)
        return
    if head in node:
        yield from walk(node[head], rest)


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search (https://hl7.org/fhir/R4/search.html#string)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()[:512]


def tokens(value: Any) -> Iterator[tuple[str | None, str | None]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or []:
                if isinstance(coding, dict) and ("code" in coding or "system" in coding):
                    yield coding.get("system"), coding.get("code")
        elif "code" in value:
            yield value.get("system"), value.get("code")
        elif "value" in value:
            yield value.get("system"), str(value.get("value"))


_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        parts = _NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
        for part in parts:
            for v in walk(value, (part,)):
                if isinstance(v, str):
                    yield v


def date_ranges(value: Any) -> Iterator[tuple[datetime, datetime]]:
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
    any other absolute URL or canonical -> (None, None, url)."""
    local = ref
    if base and ref.startswith(base.rstrip("/") + "/"):
        local = ref[len(base.rstrip("/")) + 1 :]
    elif "://" in ref or ref.startswith("urn:"):
        return None, None, ref
    parts = local.split("/")
    if len(parts) >= 2 and parts[0][:1].isupper() and parts[1]:
        return parts[0], parts[1], None
    return None, None, ref


def references(
    value: Any, base: str
) -> Iterator[tuple[str | None, str | None, str | None, str | None, str | None]]:
    """(target_type, target_id, url, identifier.system, identifier.value) per Reference/canonical."""
    if isinstance(value, str):
        yield (*split_reference(value, base), None, None)
        return
    if not isinstance(value, dict):
        return
    ref = value.get("reference")
    ident = value.get("identifier") if isinstance(value.get("identifier"), dict) else None
    isys = ident.get("system") if ident else None
    ival = ident.get("value") if ident else None
    if isinstance(ref, str) and not ref.startswith("#"):
        rtype, rid, url = split_reference(ref, base)
        yield rtype, rid, url, isys, ival
    elif ident:
        rtype = value.get("type") if isinstance(value.get("type"), str) else None
        yield rtype, None, None, isys, ival
