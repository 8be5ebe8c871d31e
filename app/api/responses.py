"""FHIR JSON responses: ETag/Location/Last-Modified headers, `Prefer` (https://hl7.org/fhir/R4/http.html#ops),
and the body chosen by `app/interactions/outcomes.py`, the same rules a Bundle entry is answered by."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from email.utils import format_datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.errors import Issue, operation_outcome
from app.fhir.bundles import subset
from app.fhir.search.params import read_summary
from app.interactions.outcomes import Answer, Outcome, answer_read, answer_write, http_date_value
from app.interactions.transaction import Preferences
from app.stored import StoredResource

FHIR_JSON = "application/fhir+json; charset=utf-8"


def fhir_response(body: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = orjson.dumps(body) if body is not None else b""
    return Response(content=content, status_code=status, headers=headers, media_type=FHIR_JSON if body is not None else None)


def no_endpoint_response(method: str, path: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """404 (no endpoint at this path) or 405 (not with this method; `headers` carries `Allow`), as an
    OperationOutcome."""
    where = f"{method} {path}"[:200]
    if status == 405:
        text, code = f"Method not allowed: {where} (allowed: {(headers or {}).get('Allow', '')})", "not-supported"
    else:
        text, code = f"No such endpoint: {where}", "not-found"
    return fhir_response(operation_outcome([Issue(code, text, msg_id=f"SF-H{status}")]), status, headers)


def query_parameter(name: str, description: str, *, repeats: bool = False, required: bool = False) -> dict[str, Any]:
    """An OpenAPI query parameter (for the FHIR router's documentation: its endpoints read the query
    themselves)."""
    schema: dict[str, Any] = {"type": "array", "items": {"type": "string"}} if repeats else {"type": "string"}
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def http_date(stored: StoredResource) -> str:
    return format_datetime(stored.last_updated.replace(tzinfo=UTC), usegmt=True)


def prefer(request: Request) -> dict[str, str]:
    """`Prefer: return=minimal, handling=strict` -> {"return": "minimal", "handling": "strict"}."""
    out: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key:
                out[key.strip().lower()] = value.strip().strip('"')
    return out


def preferences(request: Request) -> Preferences:
    prefs = prefer(request)
    return Preferences(return_mode=prefs.get("return"), strict=prefs.get("handling") == "strict")


def answer_response(answer: Answer) -> Response:
    headers: dict[str, str] = {}
    if answer.stored is not None:
        headers["ETag"] = answer.stored.etag
        headers["Last-Modified"] = http_date(answer.stored)
    if answer.location:
        # R4 http.html: Location on create, Content-Location allowed on update; both on every write
        headers["Location"] = headers["Content-Location"] = answer.location
    if answer.headers:
        headers.update(answer.headers)
    body = answer.resource if answer.resource is not None else answer.outcome
    if body is None:
        return Response(status_code=answer.status, headers=headers)
    return fhir_response(body, answer.status, headers)


def write_response(request: Request, outcome: Outcome, fhir_base: str) -> Response:
    """create/update/patch/delete, honouring `Prefer: return=`."""
    return answer_response(answer_write(outcome, fhir_base, preferences(request).return_mode))


def summary_of(request: Request) -> str | None:
    """A read's `_summary` (400 for a mode a read has not): checked before the read is made."""
    return read_summary(request.query_params.getlist("_summary"))


def read_response(request: Request, stored: StoredResource, summary: str | None = None) -> Response:
    """read/vread, honouring If-None-Match and If-Modified-Since (304) and `_summary` (`summary_of`)."""
    answer = answer_read(stored, request.headers.get("if-none-match"),
                         http_date_value(request.headers.get("if-modified-since")))
    if summary is not None and answer.resource is not None:
        answer = replace(answer, resource=subset(answer.resource, None, summary))
    return answer_response(answer)
