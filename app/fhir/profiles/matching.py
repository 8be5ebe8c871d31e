"""Value comparisons the profile engine needs: fixed (exact) and pattern (subset) matching, discriminator
paths, the codings of a coded value, and the resource type a Reference points at.

Spec: https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.pattern_x_ (pattern =
every element in the pattern is present and equal; arrays: each pattern item matches some instance item),
https://hl7.org/fhir/R4/references.html#Reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def pattern_matcher(pattern: Any) -> Callable[[Any], bool]:
    """`pattern` compiled once (profiles are compiled once, instances checked on every write): the
    returned test is true for a value that matches it."""
    if isinstance(pattern, dict):
        members = tuple((key, pattern_matcher(sub)) for key, sub in pattern.items())

        def match_object(value: Any) -> bool:
            if not isinstance(value, dict):
                return False
            return all(key in value and match(value[key]) for key, match in members)

        return match_object
    if isinstance(pattern, list):
        items = tuple(pattern_matcher(p) for p in pattern)

        def match_array(value: Any) -> bool:
            if not isinstance(value, list):
                return False
            return all(any(match(v) for v in value) for match in items)

        return match_array
    return lambda value: bool(pattern == value)


def matcher(expected: Any, exact: bool) -> Callable[[Any], bool]:
    """fixed[x] (`exact`: equal) or pattern[x] matching of `expected`, compiled."""
    return (lambda value: bool(expected == value)) if exact else pattern_matcher(expected)


def values_at(item: Any, path: str) -> list[Any]:
    """The values at a discriminator path (`$this` or dotted element names), arrays flattened."""
    if path == "$this":
        return [item]
    current = [item]
    for part in path.split("."):
        found: list[Any] = []
        for value in current:
            if isinstance(value, dict) and part in value:
                sub = value[part]
                found.extend(sub if isinstance(sub, list) else [sub])
        current = found
    return current


def codings(value: Any) -> list[tuple[str | None, str]] | None:
    """(system, code) pairs of a code, Coding or CodeableConcept; None when the value is not coded."""
    if isinstance(value, str):
        return [(None, value)]
    if not isinstance(value, dict):
        return None
    if "coding" in value or ("text" in value and "code" not in value):
        return [
            (c.get("system"), c["code"])
            for c in value.get("coding", ())
            if isinstance(c, dict) and isinstance(c.get("code"), str)
        ]
    if isinstance(value.get("code"), str):
        return [(value.get("system"), value["code"])]
    return None


def render_codes(pairs: list[tuple[str | None, str]]) -> str:
    return ", ".join(f"{s}|{c}" if s else c for s, c in pairs)


def reference_type(reference: dict[str, Any], root: dict[str, Any]) -> str | None:
    """The resource type a Reference points at, when it can be told without resolving it."""
    ref = reference.get("reference")
    if isinstance(ref, str):
        if ref.startswith("#"):
            for contained in root.get("contained", ()):
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    return contained.get("resourceType")
            return None
        if not ref.startswith(("urn:uuid:", "urn:oid:")):
            parts = ref.split("?", 1)[0].rstrip("/").split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            if len(parts) >= 2 and parts[-2][:1].isupper():
                return parts[-2]
    rtype = reference.get("type")
    if isinstance(rtype, str):
        return rtype.rsplit("/", 1)[-1]  # `type` may be a full StructureDefinition URL
    return None
