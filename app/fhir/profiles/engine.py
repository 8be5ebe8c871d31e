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
    SF-0612 invariant     an invariant (constraint) fails
    SF-0613 not-found     `$validate?profile=` names a profile we do not publish
    SF-0614 invalid       the profile is for another resource type
    SF-0615 not-found     (warning) a meta.profile we do not publish: not checked
    SF-0616 structure     matches no slice of a closed slicing
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.errors import Issue
from app.fhir.profiles.compiler import Compiler, Node
from app.fhir.profiles.matching import codings, reference_type, render_codes
from app.fhir.profiles.store import ConformanceStore
from app.vocabulary import STRUCTURE_DEFINITION as OUR_EXTENSIONS

GENERIC_CONTEXTS = ("Element", "Resource", "DomainResource")
EXTENSION_LISTS = ("extension", "modifierExtension")


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


def _items(value: dict[str, Any], node: Node, expr: str) -> list[tuple[str, str, Any]]:
    """(key, instance expression, item) of a child element; a choice `value[x]` matches valueX keys."""
    prefix = node.choice_prefix
    if prefix is None:
        if node.name not in value:
            return []
        keys = [node.name]
    else:
        keys = [k for k in value if k.startswith(prefix) and k[len(prefix):len(prefix) + 1].isupper()]
    out: list[tuple[str, str, Any]] = []
    for key in keys:
        sub = value[key]
        if isinstance(sub, list):
            out.extend((key, f"{expr}.{key}[{i}]", item) for i, item in enumerate(sub))
        else:
            out.append((key, f"{expr}.{key}", sub))
    return out


def is_ours(ext: dict[str, Any]) -> bool:
    """An extension under our canonical base (whether or not we define it)."""
    return str(ext.get("url", "")).startswith(OUR_EXTENSIONS)


def _context(content: dict[str, Any], expr: str) -> tuple[str, bool] | None:
    """Where `Engine._walk` meets the Extension at `expr` (`Flag.code.coding[0].extension[1]`): the path of
    the element it extends (`Flag.code.coding`) and whether it is a modifierExtension; None where `_walk`
    does not look (inside another extension, or not an item of an extension list)."""
    root, *segments = expr.split(".")
    name = segments[-1].partition("[")[0] if segments else ""
    if name not in EXTENSION_LISTS:
        return None
    path, node = root, content
    for segment in segments[:-1]:
        key, _, index = segment.partition("[")
        if key in EXTENSION_LISTS:
            return None
        node = node[key][int(index[:-1])] if index else node[key]
        if key == "contained":
            path = str(node.get("resourceType")) if isinstance(node, dict) else "Resource"
        else:
            path += "." + key.removeprefix("_")  # `_x` holds the extensions of primitive x
    return path, name == "modifierExtension"


def _out_of_range(node: Node, count: int) -> bool:
    return count < node.min or (node.max is not None and count > node.max)


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

    # -- profiles -------------------------------------------------------------------------------
    def structure_issues(
        self, profile_url: str, content: dict[str, Any], skip_invariants: frozenset[str] = frozenset()
    ) -> list[Issue]:
        run = _Run(profile_url, content, skip_invariants=skip_invariants)
        root = self.compiled(profile_url)
        self._element(root, content, root.name, run)
        return run.issues

    def _element(self, node: Node, value: Any, expr: str, run: _Run) -> None:
        if node.checks:
            self._checks(node, value, expr, run)
        if node.kids and isinstance(value, dict):
            for child in node.kids:
                name = child.name
                if child.choice_prefix is None:  # the commonest cases: absent, or one value and no slices
                    if name not in value:
                        if not child.absent_ok:
                            self._group(child, [], expr, run)
                        continue
                    sub = value[name]
                    if not child.slices and not isinstance(sub, list):
                        if _out_of_range(child, 1):
                            self._cardinality(child, 1, expr, f".{name}", run)
                        if child.checks or child.kids:
                            self._element(child, sub, f"{expr}.{name}", run)
                        continue
                items = _items(value, child, expr)
                if items or not child.absent_ok:
                    self._group(child, items, expr, run)

    def _checks(self, node: Node, value: Any, expr: str, run: _Run) -> None:
        if node.fixed is not None and value != node.fixed:
            text = f"{node.element_id}: the value must be exactly {_short(node.fixed)}"
            run.add("value", "SF-0603", text, expr)
        if node.pattern_match is not None and not node.pattern_match(value):
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

    def _group(self, node: Node, items: list[tuple[str, str, Any]], parent: str, run: _Run) -> None:
        if _out_of_range(node, len(items)):
            self._cardinality(node, len(items), parent, f".{node.name}", run)
        prefix = node.choice_prefix
        if node.types and prefix is not None:
            typed = []
            for key, expr, item in items:
                if key[len(prefix):] in node.type_suffixes:
                    typed.append((key, expr, item))
                else:  # nothing else can be said of a value of the wrong type
                    run.add("structure", "SF-0610", f"{node.element_id}: type {key[len(prefix):]} is not "
                            f"allowed here (allowed: {', '.join(sorted(node.types))})", expr)
            items = typed
        if node.slices:
            # when the element is missing altogether, its own min says so; its slices' mins would repeat it
            self._slices(node, items, parent, run, report_missing=bool(items) or node.min == 0)
        if node.checks or node.kids:
            for _, expr, item in items:
                self._element(node, item, expr, run)

    def _slices(
        self, node: Node, items: list[tuple[str, str, Any]], parent: str, run: _Run, report_missing: bool
    ) -> None:
        claimed: dict[str, list[tuple[str, Any]]] = {name: [] for name in node.slices}
        for _, expr, item in items:
            for name, slice_node in node.slices.items():
                if slice_node.slice_match(item):
                    claimed[name].append((expr, item))
                    break
            else:
                if node.closed:
                    run.add("structure", "SF-0616", f"{node.element_id}: this element matches none of the "
                            f"slices {', '.join(node.slices)} and the slicing is closed", expr)
        for name, slice_node in node.slices.items():
            count = len(claimed[name])
            if (count or report_missing) and _out_of_range(slice_node, count):
                self._cardinality(slice_node, count, parent, f".{node.name}:{name}", run)
            if slice_node.checks or slice_node.kids:
                for expr, item in claimed[name]:
                    self._element(slice_node, item, expr, run)

    @staticmethod
    def _cardinality(node: Node, count: int, parent: str, suffix: str, run: _Run) -> None:
        """`parent + suffix` names the element (callers only call when the count is out of range)."""
        if count < node.min:
            text = f"{node.element_id}: minimum required = {node.min}, but only found {count}"
            run.add("required", "SF-0601", text, parent + suffix)
        if node.max is not None and count > node.max:
            text = f"{node.element_id}: maximum allowed = {node.max}, but found {count}"
            run.add("structure", "SF-0602", text, parent + suffix)

    @staticmethod
    def _binding(node: Node, value: Any, expr: str, run: _Run) -> None:
        binding = node.binding
        assert binding is not None
        pairs = codings(value)
        if pairs is None:
            return
        for system, code in pairs:
            if (code in binding.codes) if system is None else ((system, code) in binding.members):
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
    def extension_issues(
        self, content: dict[str, Any], found: Sequence[tuple[str, dict[str, Any]]] | None = None
    ) -> list[Issue]:
        """Every extension under our canonical base, wherever it sits: known, allowed there, valid.
        `found`: (expression, extension) of every Extension of `content` in document order, as
        `elements.walk` collects them from a structurally valid resource; spares searching the JSON."""
        run = _Run("", content)
        if found is None:
            self._walk(content, str(content.get("resourceType")), str(content.get("resourceType")), run)
            return run.issues
        for expr, ext in found:
            if is_ours(ext):
                context = _context(content, expr)
                if context is not None:
                    self._extension(ext, context[0], expr, context[1], run)
        return run.issues

    def _walk(self, value: Any, path: str, expr: str, run: _Run) -> None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                self._walk(item, path, f"{expr}[{i}]", run)
            return
        if not isinstance(value, dict):
            return
        for key, sub in value.items():
            if key in EXTENSION_LISTS and isinstance(sub, list):
                for i, ext in enumerate(sub):
                    if isinstance(ext, dict) and is_ours(ext):
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
