"""The profile engine: validate a resource's JSON against a compiled profile (`compiler.Node` tree) and
check every SafeFlag extension it carries against that extension's StructureDefinition.

Each failure is an `Issue` with a stable message id and issue code; its `expression` names the element:
the instance path when the element is there (`Flag.category[0]`), the element id when it is missing
(`Flag.author`, `Patient.identifier:nhsNumber`). Spec: https://hl7.org/fhir/R4/validation.html#profile

    SF-0601 required      fewer repeats than the profile's min
    SF-0602 structure     more repeats than the profile's max
    SF-0603 value         not the fixed[x] value
    SF-0604 value         does not match pattern[x]
    SF-0605 code-invalid  no code in a required binding's ValueSet
    SF-0606 code-invalid  (warning) a code of the ValueSet's systems outside an extensible binding
    SF-0607 structure     a Reference to a resource type the profile does not allow
    SF-0608 extension     an extension under our canonical base that we do not define
    SF-0609 extension     our extension where its context does not allow it, or as a modifierExtension
    SF-0610 structure     a choice type (value[x]) the profile does not allow
    SF-0611 structure     matches no slice of a closed slicing
    SF-0612 invariant     an invariant (constraint) fails
    SF-0613 not-found     `$validate?profile=` names a profile we do not publish
    SF-0614 invalid       the profile is for another resource type
    SF-0615 not-found     (warning) a meta.profile we do not publish: not checked
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.errors import Issue
from app.fhir.profiles.compiler import Compiler, Node
from app.fhir.profiles.matching import (
    codings,
    matches,
    matches_pattern,
    reference_type,
    render_codes,
    values_at,
)
from app.fhir.profiles.store import CANONICAL_BASE, ConformanceStore

OUR_EXTENSIONS = CANONICAL_BASE + "/StructureDefinition/"
GENERIC_CONTEXTS = ("Element", "Resource", "DomainResource")


@dataclass
class _Run:
    profile: str
    root: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)
    skip_invariants: frozenset[str] = frozenset()

    def add(self, code: str, msg_id: str, text: str, expr: str, severity: str = "error") -> None:
        if self.profile:
            text += f" (profile {self.profile})"
        self.issues.append(Issue(code, text, severity, (expr,), msg_id))


def _items(value: dict[str, Any], name: str, expr: str) -> list[tuple[str, str, Any]]:
    """(key, instance expression, item) of a child element; a choice `value[x]` matches valueX keys."""
    if name.endswith("[x]"):
        prefix = name[:-3]
        keys = [k for k in value if k.startswith(prefix) and k[len(prefix):len(prefix) + 1].isupper()]
    else:
        keys = [name] if name in value else []
    out: list[tuple[str, str, Any]] = []
    for key in keys:
        sub = value[key]
        if isinstance(sub, list):
            out.extend((key, f"{expr}.{key}[{i}]", item) for i, item in enumerate(sub))
        else:
            out.append((key, f"{expr}.{key}", sub))
    return out


def _short(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Engine:
    def __init__(self, store: ConformanceStore) -> None:
        self.store = store
        self._compiler = Compiler(store)
        self._compiled: dict[str, Node] = {}

    def compiled(self, url: str) -> Node:
        node = self._compiled.get(url)
        if node is None:
            sd = self.store.get(url)
            if sd is None or sd.get("resourceType") != "StructureDefinition":
                raise KeyError(url)
            node = self._compiled[url] = self._compiler.compile(sd)
        return node

    def warm(self) -> None:
        """Compile every StructureDefinition now (at start-up), so a broken profile fails the start."""
        for sd in self.store.structure_definitions():
            self.compiled(sd["url"])

    # -- profiles -------------------------------------------------------------------------------
    def structure_issues(
        self, profile_url: str, content: dict[str, Any], skip_invariants: frozenset[str] = frozenset()
    ) -> list[Issue]:
        run = _Run(profile_url, content, skip_invariants=skip_invariants)
        root = self.compiled(profile_url)
        self._element(root, content, root.name, run)
        return run.issues

    def _element(self, node: Node, value: Any, expr: str, run: _Run) -> None:
        if node.fixed is not None and value != node.fixed:
            text = f"{node.element_id}: the value must be exactly {_short(node.fixed)}"
            run.add("value", "SF-0603", text, expr)
        if node.pattern is not None and not matches_pattern(node.pattern, value):
            text = f"{node.element_id}: the value must match the pattern {_short(node.pattern)}"
            run.add("value", "SF-0604", text, expr)
        if node.binding is not None:
            self._binding(node, value, expr, run)
        if node.targets is not None and isinstance(value, dict):
            target = reference_type(value, run.root)
            if target is not None and target not in node.targets:
                run.add("structure", "SF-0607", f"{node.element_id}: a reference to {target} is not allowed "
                        f"here (allowed: {', '.join(sorted(node.targets))})", expr)
        for c in node.constraints:
            if c.key not in run.skip_invariants and not c.check(value):
                run.add("invariant", "SF-0612", f"{c.key}: {c.human}", f"{expr}.{c.at}", c.severity)
        if isinstance(value, dict):
            for child in node.children.values():
                self._group(child, _items(value, child.name, expr), expr, run)

    def _group(self, node: Node, items: list[tuple[str, str, Any]], parent: str, run: _Run) -> None:
        self._cardinality(node, len(items), f"{parent}.{node.name}", run)
        if node.types:
            allowed = {t[:1].upper() + t[1:] for t in node.types}
            prefix = node.name[:-3]
            typed = []
            for key, expr, item in items:
                if key[len(prefix):] in allowed:
                    typed.append((key, expr, item))
                else:  # nothing else can be said of a value of the wrong type
                    run.add("structure", "SF-0610", f"{node.element_id}: type {key[len(prefix):]} is not "
                            f"allowed here (allowed: {', '.join(sorted(node.types))})", expr)
            items = typed
        if node.slices:
            # when the element is missing altogether, its own min says so; its slices' mins would repeat it
            self._slices(node, items, parent, run, report_missing=bool(items) or node.min == 0)
        for _, expr, item in items:
            self._element(node, item, expr, run)

    def _slices(
        self, node: Node, items: list[tuple[str, str, Any]], parent: str, run: _Run, report_missing: bool
    ) -> None:
        claimed: dict[str, list[tuple[str, Any]]] = {name: [] for name in node.slices}
        for _, expr, item in items:
            for name, slice_node in node.slices.items():
                if all(
                    any(matches(expected, v, exact) for v in values_at(item, path))
                    for path, expected, exact in slice_node.match
                ):
                    claimed[name].append((expr, item))
                    break
            else:
                if node.closed:
                    run.add("structure", "SF-0611", f"{node.element_id}: this element matches none of the "
                            f"slices {', '.join(node.slices)} and the slicing is closed", expr)
        for name, slice_node in node.slices.items():
            if claimed[name] or report_missing:
                self._cardinality(slice_node, len(claimed[name]), f"{parent}.{node.name}:{name}", run)
            for expr, item in claimed[name]:
                self._element(slice_node, item, expr, run)

    @staticmethod
    def _cardinality(node: Node, count: int, expr: str, run: _Run) -> None:
        if count < node.min:
            text = f"{node.element_id}: minimum required = {node.min}, but only found {count}"
            run.add("required", "SF-0601", text, expr)
        if node.max is not None and count > node.max:
            text = f"{node.element_id}: maximum allowed = {node.max}, but found {count}"
            run.add("structure", "SF-0602", text, expr)

    @staticmethod
    def _binding(node: Node, value: Any, expr: str, run: _Run) -> None:
        binding = node.binding
        assert binding is not None
        pairs = codings(value)
        if pairs is None:
            return
        if any((c in binding.codes) if s is None else ((s, c) in binding.members) for s, c in pairs):
            return
        where = f"the {binding.strength} value set '{binding.title}' ({binding.value_set})"
        text = (f"{node.element_id}: none of the codes provided ({render_codes(pairs)}) is in {where}"
                if pairs else f"{node.element_id}: no code provided, and a code from {where} is expected")
        if binding.strength == "required":
            run.add("code-invalid", "SF-0605", text, expr)
        elif not pairs or any(s in binding.systems for s, _ in pairs):
            # extensible: codes of other systems are allowed; a code of the ValueSet's own systems that
            # is not in it is most likely a mistake
            run.add("code-invalid", "SF-0606", text, expr, "warning")

    # -- extensions -----------------------------------------------------------------------------
    def extension_issues(self, content: dict[str, Any]) -> list[Issue]:
        """Every extension under our canonical base, wherever it sits: known, allowed there, valid."""
        run = _Run("", content)
        self._walk(content, str(content.get("resourceType")), str(content.get("resourceType")), run)
        return run.issues

    def _walk(self, value: Any, path: str, expr: str, run: _Run) -> None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                self._walk(item, path, f"{expr}[{i}]", run)
            return
        if not isinstance(value, dict):
            return
        for key, sub in value.items():
            if key in ("extension", "modifierExtension") and isinstance(sub, list):
                for i, ext in enumerate(sub):
                    if isinstance(ext, dict) and str(ext.get("url", "")).startswith(OUR_EXTENSIONS):
                        self._extension(ext, path, f"{expr}.{key}[{i}]", key == "modifierExtension", run)
            elif key == "contained" and isinstance(sub, list):
                for i, res in enumerate(sub):
                    rtype = str(res.get("resourceType")) if isinstance(res, dict) else "Resource"
                    self._walk(res, rtype, f"{expr}.contained[{i}]", run)
            elif isinstance(sub, (dict, list)):
                name = key.removeprefix("_")  # `_x` holds the extensions of primitive x
                self._walk(sub, f"{path}.{name}", f"{expr}.{key}", run)

    def _extension(self, ext: dict[str, Any], path: str, expr: str, modifier: bool, run: _Run) -> None:
        url = ext["url"]
        sd = self.store.get(url)
        if sd is None or sd.get("type") != "Extension":
            text = f"Unknown extension {url}: SafeFlag defines no such extension"
            run.add("extension", "SF-0608", text, expr)
            return
        contexts = [c.get("expression") for c in sd.get("context", ())]
        if modifier:
            run.add("extension", "SF-0609", f"Extension {url} is not a modifier extension; "
                    "put it in 'extension', not 'modifierExtension'", expr)
        elif path not in contexts and not any(c in GENERIC_CONTEXTS for c in contexts):
            run.add("extension", "SF-0609", f"Extension {url} is not allowed on {path} "
                    f"(allowed on: {', '.join(str(c) for c in contexts)})", expr)
        inner = _Run(url, run.root, run.issues)
        self._element(self.compiled(url), ext, expr, inner)
