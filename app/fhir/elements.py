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

The walk runs on every write, so each (definition path, type) gets its table of `_Slot`s compiled once
(what to check for each JSON name), most primitives pass a quick test instead of the regular
expressions, and a primitive's expression is only spelled out when it has an issue. The walk also
notes what later stages would otherwise traverse the JSON again for: a possible ele-1 violation
(`maybe_empty`), the Identifiers (NHS number rule) and the Extensions (profile engine).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import date
from typing import Any, NamedTuple

import orjson

from app.errors import Issue
from app.fhir.bindings import CURRENCY_PATHS, LANGUAGE_PATHS, MIME_TYPE_PATHS, REQUIRED
from app.fhir.ids import ID
from app.fhir.resources import R4B_ONLY_TYPES, element_defs, is_resource_type, required_elements

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_MONTH_DAY = r"-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
# R4 regexes (https://hl7.org/fhir/R4/datatypes.html#primitive)
_LEXICAL = {
    "code": re.compile(r"[^\s]+( [^\s]+)*"),
    "id": re.compile(ID),
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
_CALENDAR = frozenset({"date", "dateTime", "instant"})
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
MIME_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=(\"[^\"]*\"|{_TOKEN}))*")
LANGUAGE = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")  # BCP-47 syntax
CURRENCY = re.compile(r"[A-Z]{3}")


class Node(NamedTuple):
    """One complex element value (a resource, data type, backbone element or `_x`) met on the walk."""

    expr: str  # where it is: Patient.contact[0].name
    path: str  # its definition: Patient.contact.name (backbone) or HumanName.family (data type)
    type: str  # FHIR type
    value: Any


def _issue(code: str, text: str, expr: str, msg_id: str) -> Issue:
    return Issue(code, text, expression=(expr,), msg_id=msg_id)


# -- primitives -------------------------------------------------------------------------------------
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
    if type_name in _CALENDAR and len(value) >= 10:
        try:
            date(int(value[:4]), int(value[5:7]), int(value[8:10]))
        except ValueError:
            return f"'{_clip(value)}' is not a calendar date"
    return None


def _clip(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _show(value: Any) -> str:
    return "'" + _clip(value) + "'" if isinstance(value, str) else _clip(orjson.dumps(value).decode())


def _plainly_valid(type_name: str) -> Callable[[Any], bool]:
    """A quick test per primitive type: True only for a value `primitive_problem` accepts that is no
    ele-1 blank either; False means "ask `primitive_problem`", which words any problem. `isprintable()`
    is false for every control character and every whitespace character but the space, so that most
    strings need no regular expression."""
    if type_name == "boolean":
        return lambda v: v.__class__ is bool
    if type_name == "decimal":
        return lambda v: v.__class__ is int or v.__class__ is float
    if type_name in _INT_RANGE:
        low = _INT_RANGE[type_name]
        return lambda v: v.__class__ is int and low <= v <= _INT_MAX
    control = _CONTROL.search
    lexical = _LEXICAL.get(type_name)
    if lexical is None:  # string, markdown, xhtml: any text without control characters
        limit = MAX_STRING if type_name in ("string", "markdown") else sys.maxsize
        return lambda v: (v.__class__ is str and v != "" and (v.isprintable() or control(v) is None)
                          and not v.isspace() and len(v) <= limit)
    if type_name in ("uri", "url", "canonical"):  # \S*
        return lambda v: v.__class__ is str and v != "" and v.isprintable() and " " not in v
    if type_name == "code":  # [^\s]+( [^\s]+)*
        return lambda v: (v.__class__ is str and v != "" and v.isprintable() and v[0] != " " and v[-1] != " "
                          and "  " not in v)
    full = lexical.fullmatch
    if type_name == "base64Binary":  # its \s* would let some control characters through
        return lambda v: v.__class__ is str and full(v) is not None and (v.isprintable() or control(v) is None)
    # the other lexical forms are non-empty runs of ASCII letters, digits and punctuation
    if type_name in _CALENDAR:
        # the lexical form already bounds the month to 1-12 and the day to 1-31: only days 29-31 need a calendar
        return lambda v: (v.__class__ is str and full(v) is not None
                          and (len(v) < 10 or v[8:10] <= "28" or primitive_problem(type_name, v) is None))
    return lambda v: v.__class__ is str and full(v) is not None


def _never(value: Any) -> bool:
    return False


def code_problem(value: Any, path: str) -> str | None:
    """Why a primitive that passed `primitive_problem` breaks the binding of the element at `path`."""
    allowed = REQUIRED.get(path)
    if allowed is not None and value not in allowed:
        return f"'{value}' is not in the required value set for {path} ({', '.join(sorted(allowed))})"
    if path in MIME_TYPE_PATHS and not MIME_TYPE.fullmatch(value):
        return f"'{value}' is not a MIME type (BCP-13) for {path}"
    if _is_language(path) and not LANGUAGE.fullmatch(value):
        return f"'{value}' is not a language tag (BCP-47) for {path}"
    if path in CURRENCY_PATHS and not CURRENCY.fullmatch(value):
        return f"'{value}' is not an ISO 4217 currency code for {path}"
    return None


def _is_language(path: str) -> bool:
    head, _, element = path.partition(".")
    return path in LANGUAGE_PATHS or (element == "language" and is_resource_type(head))


def _is_bound(path: str) -> bool:
    return path in REQUIRED or path in MIME_TYPE_PATHS or path in CURRENCY_PATHS or _is_language(path)


# -- compiled element tables --------------------------------------------------------------------------
_PRIMITIVE, _COMPLEX, _RESOURCE, _SKIP, _UNKNOWN = range(5)


class _Slot:
    """What to do with one JSON name of a complex element at one definition path."""

    __slots__ = (
        "base",
        "bound",
        "child_path",
        "collect",
        "dot",
        "elem_path",
        "is_list",
        "kind",
        "one_primitive",
        "plain",
        "table",
        "type",
    )

    def __init__(self, key: str, kind: int, type_name: str = "", is_list: bool = False, elem_path: str = "",
                 child_path: str = "") -> None:
        self.dot = "." + key
        self.base = key[1:] if key.startswith("_") else None  # `_x`: its values must line up with `x`'s
        self.type = type_name
        self.kind = kind
        self.is_list = is_list
        self.elem_path = elem_path
        self.child_path = child_path
        self.plain = _plainly_valid(type_name) if kind == _PRIMITIVE else _never
        self.bound = kind == _PRIMITIVE and _is_bound(elem_path)
        self.table: _Table | None = None  # of a complex element, compiled on first use (types recurse)
        self.collect = type_name if type_name in ("Identifier", "Extension") else None
        self.one_primitive = kind == _PRIMITIVE and not is_list and self.base is None


class _Table:
    __slots__ = ("required", "slots", "type_name")

    def __init__(self, path: str, type_name: str, resource_root: bool) -> None:
        self.type_name = type_name
        self.required = tuple((name, "_" + name) for name in required_elements(type_name))
        self.slots: dict[str, _Slot] = {}
        for key, d in element_defs(type_name).items():
            if d.type in R4B_ONLY_TYPES:
                self.slots[key] = _Slot(key, _UNKNOWN)
                continue
            kind = _RESOURCE if d.type == "Resource" else _COMPLEX if d.type[:1].isupper() else _PRIMITIVE
            child_path = f"{path}.{key}" if d.nested else d.type
            self.slots[key] = _Slot(key, kind, d.type, d.is_list, f"{path}.{key}", child_path)
        if resource_root:
            self.slots["resourceType"] = _Slot("resourceType", _SKIP)


_TABLES: dict[tuple[str, str, bool], _Table] = {}


def _table(path: str, type_name: str, resource_root: bool = False) -> _Table:
    table = _TABLES.get((path, type_name, resource_root))
    if table is None:
        table = _TABLES[(path, type_name, resource_root)] = _Table(path, type_name, resource_root)
    return table


def _slot_table(slot: _Slot) -> _Table:
    if slot.table is None:
        slot.table = _table(slot.child_path, "FHIRPrimitiveExtension" if slot.type == "Element" else slot.type)
    return slot.table


# -- the walk ----------------------------------------------------------------------------------------
class Walk:
    """One walk of a resource: its issues, its complex elements (`nodes`, in document order: the
    resource roots and those at a `keep` definition path) and what later stages need without walking
    the JSON again."""

    __slots__ = ("extensions", "identifiers", "issues", "keep", "maybe_empty", "nodes")

    def __init__(self, keep: frozenset[str] | None = None) -> None:
        self.keep = keep
        self.nodes: list[Node] = []
        self.issues: list[Issue] = []
        self.identifiers: list[Node] = []  # every Identifier, for the NHS number rule
        self.extensions: list[tuple[str, dict[str, Any]]] = []  # every (where, Extension), for the profile engine
        # a null, blank string, empty object or array was met, or a part was not walked (it has an
        # issue): `validation.empty_elements` must look (ele-1 is reported before anything else)
        self.maybe_empty = False

    def resource(self, content: dict[str, Any], expr: str, rtype: str) -> None:
        self.nodes.append(Node(expr, rtype, rtype, content))
        self.complex(content, expr, _table(rtype, rtype, True))

    def complex(self, value: dict[str, Any], expr: str, table: _Table) -> None:
        if not value:
            self.maybe_empty = True
        for name, ext_name in table.required:
            if name not in value and ext_name not in value:
                self.issues.append(_issue("required", f"Missing required element {expr}.{name}", f"{expr}.{name}",
                                          "SF-0113"))
        slots = table.slots
        for key, item in value.items():
            slot = slots.get(key)
            if slot is not None and slot.one_primitive and not isinstance(item, list):  # the commonest case
                if item is None:
                    self.maybe_empty = True
                elif slot.bound or not slot.plain(item):
                    self.primitive(slot, item, expr, -1)
                continue
            kind = _UNKNOWN if slot is None else slot.kind
            if kind == _SKIP:
                continue
            if slot is None or kind == _UNKNOWN:
                self.issues.append(_issue("structure", f"Unknown element '{key}' in {table.type_name}",
                                          f"{expr}.{key}", "SF-0108"))
                continue
            if slot.is_list != isinstance(item, list):
                shape = "an array" if slot.is_list else "a single value, not an array"
                self.issues.append(_issue("structure", f"Element '{key}' must be {shape}", f"{expr}.{key}",
                                          "SF-0108"))
                continue
            if slot.base is not None:
                values = value.get(slot.base)
                if isinstance(values, list) and len(values) != len(item):
                    # https://hl7.org/fhir/R4/json.html#primitive: the two arrays align item by item
                    self.issues.append(_issue("structure", f"'{key}' must have as many items as '{slot.base}'",
                                              f"{expr}.{key}", "SF-0108"))
                    continue
            if slot.is_list:
                if not item:
                    self.maybe_empty = True
                members: Any = enumerate(item)
            elif item is None:
                self.maybe_empty = True
                continue
            else:
                members = ((-1, item),)
            for i, one in members:
                if one is None:
                    if slot.base is None:  # null is allowed only in `_x` arrays
                        self.maybe_empty = True
                elif kind != _PRIMITIVE:
                    self.element(slot, one, expr, i)
                elif slot.bound or not slot.plain(one):  # else: a valid primitive, the most common case
                    self.primitive(slot, one, expr, i)

    def primitive(self, slot: _Slot, value: Any, parent: str, index: int) -> None:
        if not slot.plain(value):
            problem = primitive_problem(slot.type, value)
            if problem:
                where = _where(parent, slot, index)
                self.issues.append(_issue("value", f"{problem} at {where}", where, "SF-0109"))
                return
            if isinstance(value, str) and not value.strip():
                self.maybe_empty = True
        if slot.bound:
            problem = code_problem(value, slot.elem_path)
            if problem:
                self.issues.append(_issue("code-invalid", problem, _where(parent, slot, index), "SF-0104"))

    def element(self, slot: _Slot, value: Any, parent: str, index: int) -> None:
        """A resource (contained), data type, backbone element or `_x`."""
        where = _where(parent, slot, index)
        if slot.kind == _RESOURCE:
            rtype = value.get("resourceType") if isinstance(value, dict) else None
            if not isinstance(rtype, str) or not is_resource_type(rtype):
                self.issues.append(
                    _issue("structure", f"'{rtype}' is not a FHIR resource type", f"{where}.resourceType", "SF-0117")
                )
                return
            self.resource(value, where, rtype)
            return
        if not isinstance(value, dict):
            self.issues.append(_issue("structure", f"{where} must be a JSON object ({slot.type})", where, "SF-0108"))
            return
        if self.keep is None or slot.child_path in self.keep:
            self.nodes.append(Node(where, slot.child_path, slot.type, value))
        if slot.collect == "Identifier":
            self.identifiers.append(Node(where, slot.child_path, slot.type, value))
        elif slot.collect == "Extension":
            self.extensions.append((where, value))
        self.complex(value, where, slot.table or _slot_table(slot))


def _where(parent: str, slot: _Slot, index: int) -> str:
    return parent + slot.dot if index < 0 else f"{parent}{slot.dot}[{index}]"


def walk(resource_type: str, content: dict[str, Any], keep: frozenset[str] | None = None) -> Walk:
    """The issues and complex elements of a resource (see `Walk`); `keep`: the definition paths whose
    Nodes are wanted (besides resource roots), None for all."""
    result = Walk(keep)
    result.resource(content, resource_type, resource_type)
    if result.issues:
        result.maybe_empty = True  # parts with an issue were not walked to the end
    return result
