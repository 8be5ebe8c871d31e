"""Index values extracted from resource JSON for each search parameter type.

The same functions serve the index writer (search) and the in-memory matcher (subscriptions), so
that a parameter means one thing everywhere. Which parts of a datatype a
parameter type looks at follows https://hl7.org/fhir/R4/search.html (token, string, date, reference).

They run on every write (each create indexes the resource and its AuditEvent), so paths are compiled
once (`compile_path`) and the extractors return lists rather than chains of generators.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from app.fhir.search.dates import MAX, MIN, parse_range

# Column widths of the index tables (app/storage/tables.py): longer values are clipped on write,
# and search values are clipped the same way, so that they still compare equal.
TOKEN_LEN = 512
REF_TYPE_LEN = 64
REF_ID_LEN = 256
URL_LEN = 1024

RefRow = tuple[str | None, str | None, str | None, str | None, str | None]
Getter = Callable[[Any], list[Any]]  # a compiled path: node -> the values at the path


def clip(text: str | None, width: int) -> str | None:
    return text[:width] if text is not None else None


# -- paths --------------------------------------------------------------------------------------
# A segment is `name`, a choice `value[x]` (every `valueXxx`), or `name[key=value]` (a
# `.where(key='value')` filter such as `telecom[system=phone]`).
_NAME, _CHOICE, _WHERE = 0, 1, 2
_Step = tuple[int, str, str, str]


def _segment(seg: str) -> _Step:
    if seg.endswith("[x]"):
        return _CHOICE, seg[:-3], "", ""
    if seg.endswith("]") and "[" in seg:
        name, _, cond = seg[:-1].partition("[")
        key, _, wanted = cond.partition("=")
        return _WHERE, name, key, wanted
    return _NAME, seg, "", ""


def _leaves(value: Any, out: list[Any]) -> None:
    """The end of a path: arrays flattened, nulls dropped."""
    if isinstance(value, list):
        for item in value:
            _leaves(item, out)
    elif value is not None:
        out.append(value)


def _elements(value: Any, out: list[Any]) -> None:
    """Part way along a path: arrays flattened, only elements (objects) go on."""
    if isinstance(value, list):
        for item in value:
            _elements(item, out)
    elif isinstance(value, dict):
        out.append(value)


Collect = Callable[[dict[str, Any], list[Any]], None]


def _collector(steps: tuple[_Step, ...]) -> Collect:
    """A function appending to `out` every value at `steps` below an element (a dict), arrays
    flattened, nulls dropped, in document order: one closure per segment, no list per level."""
    kind, name, key, wanted = steps[0]
    if kind == _NAME and len(steps) == 1:  # the last name of most paths: inlined

        def leaf(element: dict[str, Any], out: list[Any]) -> None:
            value = element.get(name)
            if isinstance(value, list):
                _leaves(value, out)
            elif value is not None:
                out.append(value)

        return leaf
    if len(steps) == 1:
        take: Callable[[Any, list[Any]], None] = _leaves
    else:
        rest = _collector(steps[1:])

        def take(value: Any, out: list[Any]) -> None:
            if isinstance(value, dict):
                rest(value, out)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        rest(item, out)
                    elif isinstance(item, list):  # arrays in arrays: flattened all the same
                        take(item, out)

    if kind == _CHOICE:

        def choice(element: dict[str, Any], out: list[Any]) -> None:
            for k, value in element.items():
                if k.startswith(name) and k[len(name) : len(name) + 1].isupper():
                    take(value, out)

        return choice
    if kind == _WHERE:

        def where(element: dict[str, Any], out: list[Any]) -> None:
            items = element.get(name)
            for item in items if isinstance(items, list) else [items]:
                if isinstance(item, dict) and item.get(key) == wanted:
                    take(item, out)

        return where

    def child(element: dict[str, Any], out: list[Any]) -> None:
        value = element.get(name)
        if value is not None:
            take(value, out)

    return child


def compile_path(path: tuple[str, ...]) -> Getter:
    """A function giving every value at `path` below a node, arrays flattened, nulls dropped, in
    document order (what `walk` gives); segments are parsed once, here."""
    if not path:

        def itself(node: Any) -> list[Any]:
            out: list[Any] = []
            _leaves(node, out)
            return out

        return itself
    collect = _collector(tuple(_segment(seg) for seg in path))

    def values(node: Any) -> list[Any]:
        out: list[Any] = []
        if isinstance(node, dict):
            collect(node, out)
        else:
            elements: list[Any] = []
            _elements(node, elements)
            for element in elements:
                collect(element, out)
        return out

    return values


# One getter per distinct path: parameters on the same element share it, so the indexer extracts it once
compiled = lru_cache(maxsize=512)(compile_path)


def walk(node: Any, path: tuple[str, ...]) -> list[Any]:
    """Every value at `path` below `node`, flattening arrays."""
    return compiled(path)(node)


def root_element(path: tuple[str, ...]) -> str | None:
    """The element a path starts at (None for a choice `value[x]`): where it is absent, the path
    gives nothing."""
    kind, name, _, _ = _segment(path[0])
    return None if kind == _CHOICE else name


# -- values -------------------------------------------------------------------------------------

def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search (https://hl7.org/fhir/R4/search.html#string)."""
    if text.isascii():  # NFKD leaves ASCII alone and it has no combining marks
        return text.casefold()[:TOKEN_LEN]
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()[:TOKEN_LEN]


def _token(system: Any, code: Any) -> tuple[str | None, str | None]:
    if not isinstance(code, str):
        code = None if code is None else str(code)
    return (system[:TOKEN_LEN] if isinstance(system, str) else None), (code[:TOKEN_LEN] if code is not None else None)


def tokens(value: Any) -> list[tuple[str | None, str | None]]:
    """(system, code) pairs of a code, boolean, Coding, CodeableConcept, Identifier or ContactPoint.

    ContactPoint gives (ContactPoint.system, value), as HAPI indexes it, so `telecom=phone|0123` works."""
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if isinstance(value, str):
        return [(None, value[:TOKEN_LEN])]
    if not isinstance(value, dict):
        return []
    if "coding" in value:
        codings = value["coding"]
        if not isinstance(codings, list):
            return []
        out = []
        for coding in codings:
            if isinstance(coding, dict) and ("code" in coding or "system" in coding):
                out.append(_token(coding.get("system"), coding.get("code")))
        return out
    if "code" in value:
        return [_token(value.get("system"), value["code"])]
    if "value" in value:
        return [_token(value.get("system"), value["value"])]
    return []


# HumanName and Address parts a string parameter matches (https://hl7.org/fhir/R4/search.html#string)
_PARTS = ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country")


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    if isinstance(value, dict):
        for part in _PARTS:
            found = value.get(part)
            if isinstance(found, str):
                out.append(found)
            elif isinstance(found, list):
                items: list[Any] = []
                _leaves(found, items)
                for item in items:
                    if isinstance(item, str):
                        out.append(item)
    return out


# The same dates come back write after write (a Flag's period start, a birth date): parse each once.
_range = lru_cache(maxsize=1024)(parse_range)


def date_ranges(value: Any) -> list[tuple[datetime, datetime]]:
    """[low, high) of a date, dateTime, instant or Period (open ends stretch to MIN/MAX)."""
    if isinstance(value, str):
        rng = _range(value)
        return [rng] if rng else []
    if isinstance(value, dict) and ("start" in value or "end" in value):
        start = value.get("start")
        end = value.get("end")
        low = _range(start) if isinstance(start, str) else None
        high = _range(end) if isinstance(end, str) else None
        return [((low[0] if low else MIN), (high[1] if high else MAX))]
    return []


def split_reference(ref: str, base: str) -> tuple[str | None, str | None, str | None]:
    """`Type/id`, `Type/id/_history/n` or an absolute URL under our base -> (type, id, None);
    any other absolute URL or canonical -> (None, None, url); a bare id -> (None, None, ref)."""
    local = ref
    root = base.rstrip("/") + "/" if base else ""
    if root and ref.startswith(root):
        local = ref[len(root) :]
    elif "://" in ref or ref.startswith("urn:"):
        return None, None, ref[:URL_LEN]
    parts = local.split("/", 2)
    if len(parts) >= 2 and parts[0][:1].isupper() and parts[0].isalnum() and parts[1]:
        return parts[0][:REF_TYPE_LEN], parts[1][:REF_ID_LEN], None
    return None, None, ref[:URL_LEN]


def url_type(url: str) -> str | None:
    """The resource type of an absolute RESTful URL `.../Type/id[/_history/n]`, if it looks like one."""
    parts = [p for p in url.split("?")[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalnum():
        return parts[-2]
    return None


def references(value: Any, base: str) -> list[RefRow]:
    """(target_type, target_id, url, identifier.system, identifier.value) per Reference/canonical."""
    if isinstance(value, str):
        return [(*split_reference(value, base), None, None)]
    if not isinstance(value, dict):
        return []
    ref = value.get("reference")
    ident = value.get("identifier")
    isys = ival = None
    if isinstance(ident, dict):
        isys, ival = ident.get("system"), ident.get("value")
        isys = isys[:TOKEN_LEN] if isinstance(isys, str) else None
        ival = ival[:TOKEN_LEN] if isinstance(ival, str) else None
    else:
        ident = None
    if isinstance(ref, str) and not ref.startswith("#"):
        rtype, rid, url = split_reference(ref, base)
        if rtype is None and url is not None and "/" not in ref and isinstance(value.get("type"), str):
            rtype, rid, url = value["type"][:REF_TYPE_LEN], ref[:REF_ID_LEN], None
        return [(rtype, rid, url, isys, ival)]
    if ident:
        rtype = value.get("type")
        return [((rtype[:REF_TYPE_LEN] if isinstance(rtype, str) else None), None, None, isys, ival)]
    return []
