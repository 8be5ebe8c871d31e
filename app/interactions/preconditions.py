"""The checks every interaction makes before it looks at a record: `begin` (the access is begun, so that
any refusal is audited; the type is one this server serves; the id keeps the FHIR id pattern), and the
request's conditions: If-Match versions, If-None-Exist and the criteria of conditional interactions
(https://hl7.org/fhir/R4/http.html).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from app.errors import BadRequest, NotFound, PreconditionFailed
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.fhir.validation import check_id
from app.security.guard import Guard
from app.stored import StoredResource


def check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(f"Resource type '{resource_type}' is not supported", msg_id="SF-0300", code="not-supported")


def begin(guard: Guard, interaction: str, resource_type: str | None, res_id: str | None = None, *,
          query: str | None = None) -> None:
    """Begin the access before anything may refuse it, so that every refusal is audited (an unknown
    type, an id that breaks the FHIR id pattern, and later the policy's), then make those checks."""
    guard.begin(interaction, resource_type, res_id, query)
    if resource_type is not None:
        check_type(resource_type)
    if res_id is not None:
        check_id(res_id)


def parse_version(raw: str | None) -> int | None:
    """`W/"3"`, `"3"` or `3` -> 3 (If-Match with a weak ETag or a bare version)."""
    if raw is None:
        return None
    text = raw.strip()
    text = text.removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit()):  # isdigit alone takes '²', which int() refuses
        raise BadRequest(f"Invalid version '{raw}' in If-Match", msg_id="SF-0110", expression="If-Match")
    return int(text)


def check_version(current: StoredResource, expected: int | None) -> None:
    """If-Match (https://hl7.org/fhir/R4/http.html#concurrency): 412 unless it names the current version."""
    if expected is not None and expected != current.version_id:
        raise PreconditionFailed(
            f"If-Match version {expected} does not match the current version {current.version_id} "
            f"of {current.resource_type}/{current.id}",
            msg_id="SF-0413",
        )


def conditional_query(raw: str, resource_type: str, what: str = "If-None-Exist") -> list[tuple[str, str]]:
    """`identifier=s|v`, `?identifier=s|v` or `Patient?identifier=s|v` (If-None-Exist header,
    Bundle `request.ifNoneExist`) -> query pairs; another type before the `?` is an error."""
    text = raw.strip()
    if "?" in text:
        prefix, text = text.split("?", 1)
        prefix = prefix.rstrip("/").rsplit("/", 1)[-1]
        if prefix and prefix != resource_type:
            raise BadRequest(
                f"{what} criteria '{raw}' are for {prefix}, not {resource_type}", msg_id="SF-0112", expression=what
            )
    return parse_qsl(text, keep_blank_values=True)


_NOT_CRITERIA = ("_format", "_pretty")


def conditional_criteria(query: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The search criteria of a conditional interaction's query string (`_format`/`_pretty` are not)."""
    return [(k, v) for k, v in query if k not in _NOT_CRITERIA]


def same_content(new: dict[str, Any], stored: dict[str, Any]) -> bool:
    """An update that changes nothing but id and version bookkeeping (as HAPI: no new version)."""
    return _comparable(new) == _comparable(stored)


def _comparable(content: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in content.items() if k not in ("id", "meta")}
    meta = {k: v for k, v in (content.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out
