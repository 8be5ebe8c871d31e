"""The ONLY import site of fhir.resources. Its R4B models serve R4 4.0.1 for the types we use.

Two things come from the models: `structure_errors` (cardinality, required elements, choice types)
and `element_defs`, the element table of each type (JSON name, FHIR type, list or not) that
`validation.py` walks to check what the models let through (https://hl7.org/fhir/R4/json.html).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

__all__ = ["ElementDef", "element_defs", "is_resource_type", "model_class", "required_elements", "structure_errors"]

# pydantic metadata class of an annotated primitive -> FHIR primitive type name
_PRIMITIVES = {
    "Base64Binary": "base64Binary", "EncodedBytes": "base64Binary", "UuidVersion": "uuid",
    "Canonical": "canonical", "Code": "code", "Date": "date",
    "DateTime": "dateTime", "Decimal": "decimal", "Id": "id", "Instant": "instant", "Integer": "integer",
    "Integer64": "integer64", "Markdown": "markdown", "Oid": "oid", "PositiveInt": "positiveInt",
    "String": "string", "Time": "time", "UnsignedInt": "unsignedInt", "Uri": "uri", "Url": "url",
    "Uuid": "uuid", "Xhtml": "xhtml",
}
# Data types R4B added: R4 4.0.1 has no element of these types (e.g. Extension.valueCodeableReference).
R4B_ONLY_TYPES = frozenset({"CodeableReference", "RatioRange", "Integer64"})


@dataclass(frozen=True)
class ElementDef:
    """One element of a FHIR type as the JSON carries it."""

    name: str  # JSON name, `_x` for the primitive extension of `x`
    type: str  # FHIR type: a primitive ("code"), a data type ("Identifier"), a backbone ("PatientContact"),
    #            "Resource" (contained) or "Element" (a primitive's `_x` id/extension holder)
    is_list: bool
    nested: bool  # a backbone element (or Timing.repeat): its definition path continues the parent's
    required: bool = False  # 1..1 primitive: fhir.resources marks it `element_required`


@lru_cache(maxsize=64)
def model_class(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


@lru_cache(maxsize=1024)
def is_resource_type(name: str) -> bool:
    """True for the name of a FHIR resource type (e.g. a contained resource's `resourceType`)."""
    if not name.isalnum() or not name[:1].isupper():
        return False
    try:
        cls = get_fhir_model_class(name)
    except (KeyError, ValueError, AttributeError, ImportError):
        return False
    resource_cls = get_fhir_model_class("Resource")
    return bool(issubclass(cls, resource_cls)) and name not in ("Resource", "DomainResource")


def _field_type(annotation: Any) -> tuple[str, bool]:
    """(FHIR type name, is list) from a fhir.resources field annotation."""
    is_list = False
    ann = annotation
    while True:
        origin = typing.get_origin(ann)
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if origin in (list, typing.List):  # noqa: UP006 - the models use typing.List
            is_list, ann = True, args[0]
        elif origin is typing.Annotated:
            meta = type(typing.get_args(ann)[1]).__name__
            return _PRIMITIVES.get(meta, meta.lower()), is_list
        elif args and origin is not None:  # Optional[...] / X | None
            ann = args[0]
        else:
            break
    if ann is bool:
        return "boolean", is_list
    name = getattr(ann, "__name__", str(ann)).removesuffix("Type")
    return ("Element" if name == "FHIRPrimitiveExtension" else name), is_list


@lru_cache(maxsize=512)
def element_defs(type_name: str) -> dict[str, ElementDef]:
    """JSON name -> ElementDef for a resource, data type or backbone element (python-only names left out)."""
    cls = get_fhir_model_class(type_name)
    out: dict[str, ElementDef] = {}
    for field_name, info in cls.model_fields.items():
        if field_name in ("fhir_comments", "resource_type"):
            continue
        ftype, is_list = _field_type(info.annotation)
        nested = False
        if ftype[:1].isupper() and ftype not in ("Resource", "Element"):
            sub = get_fhir_model_class(ftype)
            # a type defined in its parent's module is a backbone element (or Timing.repeat, Bundle.entry...)
            nested = sub.__module__.rsplit(".", 1)[-1] != sub.__name__.lower()
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        name = info.alias or field_name
        out[name] = ElementDef(name, ftype, is_list, nested, bool(extra.get("element_required")))
    return out


@lru_cache(maxsize=512)
def required_elements(type_name: str) -> tuple[str, ...]:
    """The 1..1 primitives of a type (a value or its `_x` extension must be present)."""
    return tuple(d.name for d in element_defs(type_name).values() if d.required)


def _expression(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith("function-") and part != "root":
            out += f".{part}"
    return out


def structure_errors(resource_type: str, content: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Validate `content` with the R4B model: [(expression, pydantic error type, message)]."""
    try:
        model_class(resource_type).model_validate(content)
    except ValidationError as exc:
        return [(_expression(resource_type, tuple(e["loc"])), e["type"], e["msg"]) for e in exc.errors()]
    except Exception as exc:  # noqa: BLE001 - the parser raises KeyError, TypeError... on malformed client data
        return [(resource_type, "parse_error", f"cannot be parsed: {exc}")]
    return []
