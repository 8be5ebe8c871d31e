"""Element-level checks the fhir.resources models skip, made by walking the JSON alongside the
element table of each type (`resources.element_defs`):

- unknown elements, including the python-only names the models accept (`gender__ext`,
  `resource_type`, `fhir_comments`), `resourceType` away from a resource root, and the R4B-only
  types (`valueCodeableReference`); contained resources of unknown type;
- JSON types of primitives (https://hl7.org/fhir/R4/json.html#primitive): the models coerce
  `"true"` and `1` to boolean and `"2"` to integer, which a FHIR server must refuse;
- lexical forms of the R4 primitives (https://hl7.org/fhir/R4/datatypes.html#primitive), also
  the ones the models miss: id longer than 64, control characters in strings, whitespace in uris,
  base64Binary, impossible calendar dates;
- required bindings (`bindings.py`) and the syntax of MIME type, language and currency codes.

Each finding is an `Issue` whose expression names the element (e.g. `Patient.name[0].given[1]`).
Core invariants on complex elements are in `invariants.py`, run on the `Node`s collected here.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, NamedTuple

import orjson

from app.errors import Issue
from app.fhir.bindings import CURRENCY_PATHS, LANGUAGE_PATHS, MIME_TYPE_PATHS, REQUIRED
from app.fhir.resources import R4B_ONLY_TYPES, element_defs, is_resource_type, required_elements

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_MONTH_DAY = r"-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
# R4 regexes (https://hl7.org/fhir/R4/datatypes.html#primitive)
_LEXICAL = {
    "code": re.compile(r"[^\s]+( [^\s]+)*"),
    "id": re.compile(r"[A-Za-z0-9\-.]{1,64}"),
    "uri": re.compile(r"\S*"),
    "url": re.compile(r"\S*"),
    "canonical": re.compile(r"\S*"),
    "oid": re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"),
    "uuid": re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    "base64Binary": re.compile(r"(\s*[0-9a-zA-Z+/=]{4}\s*)+"),
    "date": re.compile(_YEAR + r"(" + _MONTH_DAY + r")?)?"),
    "dateTime": re.compile(_YEAR + r"(" + _MONTH_DAY + r"(T" + _TIME + _ZONE + r")?)?)?"),
    "instant": re.compile(_YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T" + _TIME + _ZONE),
    "time": re.compile(_TIME),
}
MAX_STRING = 1024 * 1024  # https://hl7.org/fhir/R4/datatypes.html#string
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_INT_RANGE = {"integer": -(2**31), "unsignedInt": 0, "positiveInt": 1}
_INT_MAX = 2**31 - 1
_NUMERIC = frozenset({"integer", "unsignedInt", "positiveInt", "decimal"})
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
MIME_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=(\"[^\"]*\"|{_TOKEN}))*")
LANGUAGE = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")  # BCP-47 syntax
CURRENCY = re.compile(r"[A-Z]{3}")


class Node(NamedTuple):
    """One element value met on the walk."""

    expr: str  # where it is: Patient.contact[0].name
    path: str  # its definition: Patient.contact.name (backbone) or HumanName.family (data type)
    type: str  # FHIR type
    value: Any


def _issue(code: str, text: str, expr: str, msg_id: str) -> Issue:
    return Issue(code, text, expression=(expr,), msg_id=msg_id)


class _Walker:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.issues: list[Issue] = []

    def resource(self, content: dict[str, Any], expr: str, rtype: str) -> None:
        self.nodes.append(Node(expr, rtype, rtype, content))
        self.complex(content, expr, rtype, rtype, resource_root=True)

    def complex(self, value: dict[str, Any], expr: str, path: str, type_name: str, resource_root: bool = False) -> None:
        defs = element_defs(type_name)
        for name in required_elements(type_name):
            if name not in value and f"_{name}" not in value:
                self.issues.append(_issue("required", f"Missing required element {expr}.{name}", f"{expr}.{name}",
                                          "SF-0113"))
        for key, item in value.items():
            sub = f"{expr}.{key}"
            if key == "resourceType" and resource_root:
                continue
            d = defs.get(key)
            if d is None or d.type in R4B_ONLY_TYPES:
                self.issues.append(_issue("structure", f"Unknown element '{key}' in {type_name}", sub, "SF-0108"))
                continue
            child_path = f"{path}.{key}" if d.nested else d.type
            if d.is_list != isinstance(item, list):
                shape = "an array" if d.is_list else "a single value, not an array"
                self.issues.append(_issue("structure", f"Element '{key}' must be {shape}", sub, "SF-0108"))
                continue
            values = value.get(key[1:]) if key.startswith("_") else None
            if isinstance(values, list) and len(values) != len(item):
                # https://hl7.org/fhir/R4/json.html#primitive: the two arrays align item by item
                self.issues.append(_issue("structure", f"'{key}' must have as many items as '{key[1:]}'", sub,
                                          "SF-0108"))
                continue
            items = enumerate(item) if isinstance(item, list) else ((None, item),)
            for i, one in items:
                where = sub if i is None else f"{sub}[{i}]"
                if one is None:
                    continue  # null is allowed only in `_x` arrays; ele-1 reported the others already
                self.element(one, where, f"{path}.{key}", child_path, d.type)

    def element(self, value: Any, expr: str, elem_path: str, child_path: str, type_name: str) -> None:
        if type_name == "Resource":
            rtype = value.get("resourceType") if isinstance(value, dict) else None
            if not isinstance(rtype, str) or not is_resource_type(rtype):
                self.issues.append(
                    _issue("structure", f"'{rtype}' is not a FHIR resource type", f"{expr}.resourceType", "SF-0117")
                )
                return
            self.resource(value, expr, rtype)
            return
        if type_name[:1].isupper():  # data type, backbone element or a primitive's `_x` Element
            if not isinstance(value, dict):
                self.issues.append(_issue("structure", f"{expr} must be a JSON object ({type_name})", expr, "SF-0108"))
                return
            self.nodes.append(Node(expr, child_path, type_name, value))
            self.complex(value, expr, child_path, "FHIRPrimitiveExtension" if type_name == "Element" else type_name)
            return
        problem = primitive_problem(type_name, value)
        if problem:
            self.issues.append(_issue("value", f"{problem} at {expr}", expr, "SF-0109"))
            return
        self.nodes.append(Node(expr, elem_path, type_name, value))
        self.code_checks(value, expr, elem_path)

    def code_checks(self, value: Any, expr: str, path: str) -> None:
        allowed = REQUIRED.get(path)
        if allowed is not None and value not in allowed:
            self.issues.append(
                _issue("code-invalid", f"'{value}' is not in the required value set for {path} "
                       f"({', '.join(sorted(allowed))})", expr, "SF-0104")
            )
        elif path in MIME_TYPE_PATHS and not MIME_TYPE.fullmatch(value):
            self.issues.append(_issue("code-invalid", f"'{value}' is not a MIME type (BCP-13) for {path}", expr,
                                      "SF-0104"))
        elif _is_language(path) and not LANGUAGE.fullmatch(value):
            self.issues.append(_issue("code-invalid", f"'{value}' is not a language tag (BCP-47) for {path}", expr,
                                      "SF-0104"))
        elif path in CURRENCY_PATHS and not CURRENCY.fullmatch(value):
            self.issues.append(_issue("code-invalid", f"'{value}' is not an ISO 4217 currency code for {path}", expr,
                                      "SF-0104"))


def _is_language(path: str) -> bool:
    head, _, element = path.partition(".")
    return path in LANGUAGE_PATHS or (element == "language" and is_resource_type(head))


def primitive_problem(type_name: str, value: Any) -> str | None:
    """Why `value` is not a valid JSON representation of the primitive, or None."""
    if type_name == "boolean":
        return None if isinstance(value, bool) else f"{_show(value)} is not a boolean (true or false)"
    if type_name in _NUMERIC:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{_show(value)} is not a JSON number ({type_name})"
        if type_name == "decimal":
            return None
        if not isinstance(value, int):  # FHIR JSON integers have no fraction part, not even `2.0`
            return f"{_show(value)} is not an integer ({type_name})"
        if not _INT_RANGE[type_name] <= value <= _INT_MAX:
            return f"{value} is out of range for {type_name} ({_INT_RANGE[type_name]}..{_INT_MAX})"
        return None
    if not isinstance(value, str):
        return f"{_show(value)} is not a JSON string ({type_name})"
    if _CONTROL.search(value):
        return f"A {type_name} may not contain control characters"
    if len(value) > MAX_STRING and type_name in ("string", "markdown"):
        return f"A {type_name} may not exceed 1 MB ({MAX_STRING} characters)"
    lexical = _LEXICAL.get(type_name)
    if lexical is not None and not lexical.fullmatch(value):
        return f"'{_clip(value)}' is not a valid {type_name}"
    if type_name in ("date", "dateTime", "instant") and len(value) >= 10:
        try:
            date(int(value[:4]), int(value[5:7]), int(value[8:10]))
        except ValueError:
            return f"'{_clip(value)}' is not a calendar date"
    return None


def _clip(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _show(value: Any) -> str:
    return "'" + _clip(value) + "'" if isinstance(value, str) else _clip(orjson.dumps(value).decode())


def walk(resource_type: str, content: dict[str, Any]) -> tuple[list[Node], list[Issue]]:
    """All element values of a resource with their types, and the issues found on the way."""
    walker = _Walker()
    walker.resource(content, resource_type, resource_type)
    return walker.nodes, walker.issues
