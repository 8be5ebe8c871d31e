"""The ONLY import site of fhir.resources. Its R4B models serve R4 4.0.1 for the types we use."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

__all__ = ["model_class", "structure_errors"]


@lru_cache(maxsize=64)
def model_class(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def _expression(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith("function-"):
            out += f".{part}"
    return out


def structure_errors(resource_type: str, content: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Validate `content` with the R4B model: [(expression, pydantic error type, message)]."""
    try:
        model_class(resource_type).model_validate(content)
    except ValidationError as exc:
        return [(_expression(resource_type, tuple(e["loc"])), e["type"], e["msg"]) for e in exc.errors()]
    except (ValueError, TypeError) as exc:  # fhir.resources raises these for some malformed input
        return [(resource_type, "value_error", str(exc))]
    return []
