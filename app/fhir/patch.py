"""PATCH bodies (https://hl7.org/fhir/R4/http.html#patch): JSON Patch (RFC 6902) and JSON merge
patch (RFC 7396), applied to a copy of the stored resource. FHIRPath Patch is not supported (415).

A failing `test` operation or a path that does not exist is 422 (the patch is well formed but cannot
be applied to this resource); a patch that is not a patch at all is 400.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from app.errors import BadRequest, Unprocessable, UnsupportedMediaType


def patch_format(content_type: str, patch_body: Any) -> str:
    """`json-patch` or `merge-patch` from the media type (https://hl7.org/fhir/R4/http.html#patch).
    Plain `application/json` (fhirpy sends its merge patch so) is told apart by shape."""
    if content_type == "application/json-patch+json":
        return "json-patch"
    if content_type == "application/merge-patch+json":
        return "merge-patch"
    if content_type in ("application/fhir+json", "application/json+fhir"):
        raise UnsupportedMediaType(
            "FHIRPath Patch is not supported; send application/json-patch+json or "
            "application/merge-patch+json",
            msg_id="SF-0125",
        )
    if content_type not in ("", "application/json"):
        raise UnsupportedMediaType(
            f"'{content_type}' is not a patch format; send application/json-patch+json or "
            "application/merge-patch+json",
            msg_id="SF-0125",
        )
    return "json-patch" if isinstance(patch_body, list) else "merge-patch"


def apply_patch(content: dict[str, Any], patch_body: Any, content_type: str) -> Any:
    """JSON Patch (RFC 6902) or JSON merge patch (RFC 7396) applied to a copy of `content`."""
    if patch_format(content_type, patch_body) == "merge-patch":
        if not isinstance(patch_body, dict):
            raise BadRequest("A JSON merge patch must be a JSON object", msg_id="SF-0120")
        return _merge(copy.deepcopy(content), patch_body)
    if not isinstance(patch_body, list):
        raise BadRequest("A JSON Patch must be a JSON array of operations", msg_id="SF-0120")
    try:
        patch = jsonpatch.JsonPatch(patch_body)
        return patch.apply(copy.deepcopy(content))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Unprocessable(f"JSON Patch test failed: {exc}", msg_id="SF-0123") from exc
    except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
        raise Unprocessable(f"JSON Patch cannot be applied: {exc}", msg_id="SF-0124") from exc
    except (jsonpatch.InvalidJsonPatch, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BadRequest(f"Invalid JSON Patch: {exc}", msg_id="SF-0120") from exc


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target
