"""Compile a constraint StructureDefinition's differential, once, into a tree of `Node`s the engine walks.

Only what a differential states is compiled (the base resource's own rules are checked by the R4B
models and `validation.py`): min/max, fixed[x]/pattern[x], required/extensible bindings (expanded
against our ValueSets), Reference targetProfile types, choice-type restrictions, extension slices by
profile URL, slicing by `value`/`pattern` discriminators, and the invariants that have a native check
(`NATIVE_CONSTRAINTS`). Anything else a profile uses (other discriminator types, contentReference,
choice-type slices) fails compilation, so no profile can carry a rule the engine silently skips.
Spec: https://hl7.org/fhir/R4/profiling.html, https://hl7.org/fhir/R4/elementdefinition.html
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.fhir import nhs_number
from app.fhir.profiles.matching import matcher, pattern_matcher, values_at
from app.fhir.profiles.store import ConformanceStore
from app.vocabulary import HL7_STRUCTURE_DEFINITION as HL7_SD

VALIDATED_STRENGTHS = ("required", "extensible")


class ProfileError(ValueError):
    """A StructureDefinition the engine cannot enforce as written."""


def _nhs_number_ok(identifier: Any) -> bool:
    value = identifier.get("value") if isinstance(identifier, dict) else None
    return not isinstance(value, str) or nhs_number.is_valid(value)  # a missing value is a min error


def _secret_ok(extension: Any) -> bool:
    value = extension.get("valueString") if isinstance(extension, dict) else None
    return not isinstance(value, str) or len(value) >= 32


# Invariants by key: the FHIRPath in the profile is for HAPI and other validators; these are the same
# rules in Python (we carry no FHIRPath engine). (check, element the issue points at)
NATIVE_CONSTRAINTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "sf-nhs-1": (_nhs_number_ok, "value"),
    "sf-secret-1": (_secret_ok, "valueString"),
}


@dataclass(frozen=True)
class Binding:
    strength: str
    value_set: str
    title: str
    members: frozenset[tuple[str, str]]
    codes: frozenset[str]
    systems: frozenset[str]


@dataclass(frozen=True)
class Constraint:
    key: str
    severity: str
    human: str
    check: Callable[[Any], bool]
    at: str


@dataclass(eq=False)
class Node:
    element_id: str
    name: str
    min: int = 0
    max: int | None = None
    fixed: Any = None
    pattern: Any = None
    binding: Binding | None = None
    types: frozenset[str] = frozenset()  # allowed type codes of a choice element ("" = not restricted)
    targets: frozenset[str] | None = None  # allowed Reference target resource types
    extension_url: str | None = None  # an extension slice's profile
    constraints: tuple[Constraint, ...] = ()
    children: dict[str, Node] = field(default_factory=dict)
    discriminators: tuple[tuple[str, str], ...] = ()  # (type, path) when this element is sliced
    closed: bool = False
    slices: dict[str, Node] = field(default_factory=dict)
    # per slice: [(path, expected value, exact?)] computed from the slice's own fixed/pattern
    match: tuple[tuple[str, Any, bool], ...] = ()
    # set by `finish` for the engine's walk, so that it does not work them out on every instance
    kids: tuple[Node, ...] = ()  # `children` in order
    checks: bool = False  # any of fixed, pattern, binding, targets, constraints
    pattern_match: Callable[[Any], bool] | None = None
    choice_prefix: str | None = None  # `value` of `value[x]`
    type_suffixes: frozenset[str] = frozenset()  # `types` as they end a choice's JSON name (`Quantity`)
    absent_ok: bool = True  # nothing to report when the element is not there at all
    slice_match: Callable[[Any], bool] = field(default=lambda item: True)  # is an item in this slice (`match`)

    def finish(self) -> None:
        self.kids = tuple(self.children.values())
        self.pattern_match = None if self.pattern is None else pattern_matcher(self.pattern)
        if len(self.match) == 1 and self.match[0][0] == "$this" and self.match[0][1] is self.pattern:
            # a slice told apart by its own pattern only ever sees items that match it
            self.pattern_match = None
        self.checks = bool(
            self.fixed is not None or self.pattern_match is not None or self.binding or self.targets is not None
            or self.constraints
        )
        self.choice_prefix = self.name[:-3] if self.name.endswith("[x]") else None
        self.type_suffixes = frozenset(t[:1].upper() + t[1:] for t in self.types)
        self.absent_ok = self.min == 0 and all(s.min == 0 for s in self.slices.values())
        tests = tuple((path, matcher(expected, exact)) for path, expected, exact in self.match)
        if len(tests) == 1 and tests[0][0] == "$this":
            self.slice_match = tests[0][1]  # values_at(item, "$this") is [item]
        else:
            self.slice_match = lambda item: all(any(test(v) for v in values_at(item, path)) for path, test in tests)

    def has_checks(self) -> bool:
        return bool(
            self.min or self.max is not None or self.fixed is not None or self.pattern is not None
            or self.binding or self.types or self.targets is not None or self.constraints
            or self.children or self.slices
        )


def _segments(element_id: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for part in element_id.split("."):
        name, _, slice_name = part.partition(":")
        out.append((name, slice_name or None))
    return out


def _value_of(element: dict[str, Any], prefix: str) -> Any:
    for key, value in element.items():
        if key.startswith(prefix) and key[len(prefix):len(prefix) + 1].isupper():
            return value
    return None


class Compiler:
    def __init__(self, store: ConformanceStore) -> None:
        self.store = store
        self.terminology = store.terminology

    def compile(self, sd: dict[str, Any]) -> Node:
        if sd.get("derivation") != "constraint":
            raise ProfileError(f"{sd.get('url')}: only constraint profiles can be enforced")
        elements = sd.get("differential", {}).get("element", [])
        root = Node(sd["type"], sd["type"])
        for element in elements:
            eid = element.get("id")
            if not eid or element.get("path") != re.sub(r":[^.]+", "", eid):
                raise ProfileError(f"{sd['url']}: element id {eid!r} does not match its path")
            node = self._locate(root, sd, eid)
            self._apply(sd, node, element)
        for node in reversed(self._all(root)):  # bottom-up, so emptied parents go too
            self._prune(node)
        for node in self._all(root):
            if node.slices:
                for slice_node in node.slices.values():
                    slice_node.match = self._slice_match(sd, node, slice_node)
        for node in self._all(root):
            node.finish()
        return root

    def _locate(self, root: Node, sd: dict[str, Any], eid: str) -> Node:
        segments = _segments(eid)
        if segments[0] != (sd["type"], None):
            raise ProfileError(f"{sd['url']}: element {eid} is not under {sd['type']}")
        node, path = root, sd["type"]
        for name, slice_name in segments[1:]:
            path += "." + name
            node = node.children.setdefault(name, Node(path, name))
            if slice_name is not None:
                if name.endswith("[x]"):
                    raise ProfileError(f"{sd['url']}: choice-type slices ({eid}) are not supported")
                path += ":" + slice_name
                node = node.slices.setdefault(slice_name, Node(path, name))
        return node

    def _apply(self, sd: dict[str, Any], node: Node, element: dict[str, Any]) -> None:
        url = sd["url"]
        if "contentReference" in element:
            raise ProfileError(f"{url}: contentReference on {node.element_id} is not supported")
        if "min" in element:
            node.min = int(element["min"])
        if "max" in element:
            node.max = None if element["max"] == "*" else int(element["max"])
        node.fixed = _value_of(element, "fixed")
        node.pattern = _value_of(element, "pattern")
        if "binding" in element:
            node.binding = self._binding(url, element["binding"])
        types = element.get("type") or []
        if node.name.endswith("[x]") and types:
            node.types = frozenset(t["code"] for t in types)
        targets: set[str] = set()
        for t in types:
            for target in t.get("targetProfile", ()):
                targets.add(self._resource_type_of(url, target))
            if t.get("code") == "Extension" and t.get("profile"):
                node.extension_url = t["profile"][0]
                if self.store.get(node.extension_url) is None:
                    raise ProfileError(f"{url}: extension {node.extension_url} is not in fhir_profiles/")
        if targets:
            node.targets = frozenset(targets)
        constraints = []
        for c in element.get("constraint", ()):
            native = NATIVE_CONSTRAINTS.get(c["key"])
            if native is None:
                raise ProfileError(f"{url}: invariant {c['key']} has no native check in the engine")
            constraints.append(Constraint(c["key"], c.get("severity", "error"), c["human"], *native))
        node.constraints = tuple(constraints)
        if "slicing" in element:
            slicing = element["slicing"]
            discriminators = tuple((d["type"], d["path"]) for d in slicing.get("discriminator", ()))
            if not discriminators or any(t not in ("value", "pattern") for t, _ in discriminators):
                raise ProfileError(f"{url}: slicing of {node.element_id} needs value/pattern discriminators")
            node.discriminators = discriminators
            node.closed = slicing.get("rules") == "closed"

    def _binding(self, url: str, binding: dict[str, Any]) -> Binding | None:
        strength, vs = binding.get("strength"), binding.get("valueSet")
        if strength not in VALIDATED_STRENGTHS or not vs:
            return None  # preferred/example bindings guide, they do not constrain
        if not self.terminology.has_value_set(vs):
            raise ProfileError(f"{url}: ValueSet {vs} is not defined in fhir_profiles/")
        members = self.terminology.expand(vs)
        title = self.terminology.value_set(vs).get("title") or vs
        return Binding(
            strength, vs, title, members, frozenset(c for _, c in members), frozenset(s for s, _ in members)
        )

    def _resource_type_of(self, url: str, target: str) -> str:
        if target.startswith(HL7_SD):
            return target[len(HL7_SD):]
        sd = self.store.get(target)
        if sd is None or sd.get("resourceType") != "StructureDefinition":
            raise ProfileError(f"{url}: targetProfile {target} is unknown")
        return str(sd["type"])

    def _slice_match(
        self, sd: dict[str, Any], sliced: Node, slice_node: Node
    ) -> tuple[tuple[str, Any, bool], ...]:
        out = []
        for dtype, path in sliced.discriminators:
            if path == "url" and slice_node.extension_url:
                out.append(("url", slice_node.extension_url, True))
                continue
            target: Node | None = slice_node
            if path != "$this":
                for part in path.split("."):
                    target = target.children.get(part) if target else None
            if target is None or (target.fixed is None and target.pattern is None):
                raise ProfileError(
                    f"{sd['url']}: slice {slice_node.element_id} sets no fixed/pattern value at {path}"
                )
            exact = target.fixed is not None and dtype == "value"
            out.append((path, target.fixed if target.fixed is not None else target.pattern, exact))
        return tuple(out)

    def _all(self, node: Node) -> list[Node]:
        out = [node]
        for child in list(node.children.values()) + list(node.slices.values()):
            out.extend(self._all(child))
        return out

    @staticmethod
    def _prune(node: Node) -> None:
        # mustSupport-only elements carry nothing to check; dropping them keeps the walk short
        node.children = {k: v for k, v in node.children.items() if v.has_checks() or v.children}
