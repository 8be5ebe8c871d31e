"""FHIR JSON responses: ETag/Location/Last-Modified, `Prefer: return=...`, OperationOutcome rendering."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import timezone
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.errors import Issue, operation_outcome
from app.fhir.service import Outcome
from app.storage.repository import StoredResource

FHIR_JSON = "application/fhir+json; charset=utf-8"


def fhir_response(body: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = orjson.dumps(body) if body is not None else b""
    return Response(content=content, status_code=status, headers=headers, media_type=FHIR_JSON if body is not None else None)


def http_date(stored: StoredResource) -> str:
    return format_datetime(stored.last_updated.replace(tzinfo=timezone.utc), usegmt=True)


def resource_headers(stored: StoredResource, fhir_base: str, location: bool) -> dict[str, str]:
    headers = {"ETag": stored.etag, "Last-Modified": http_date(stored)}
    if location:
        headers["Location"] = f"{fhir_base}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
    return headers


def prefer(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key:
                out[key.strip().lower()] = value.strip().strip('"')
    return out


def write_response(request: Request, outcome: Outcome, fhir_base: str) -> Response:
    """Render the result of create/update/patch/delete honouring `Prefer: return=`."""
    headers: dict[str, str] = {}
    if outcome.stored is not None and outcome.status != 204:
        headers = resource_headers(outcome.stored, fhir_base, outcome.location or outcome.status == 201)
    if outcome.status == 204 or outcome.stored is None:
        if outcome.stored is not None:
            headers["ETag"] = outcome.stored.etag
        return Response(status_code=204 if outcome.status in (200, 204) else outcome.status, headers=headers)
    mode = prefer(request).get("return", "representation")
    if mode == "minimal":
        return Response(status_code=outcome.status, headers=headers)
    if mode == "OperationOutcome":
        verb = "created" if outcome.status == 201 else "processed"
        issues = outcome.issues or [
            Issue("informational", f"{outcome.stored.resource_type}/{outcome.stored.id} {verb}", "information",
                  msg_id="SF-0001")
        ]
        return fhir_response(operation_outcome(issues), outcome.status, headers)
    return fhir_response(outcome.stored.content, outcome.status, headers)


def read_response(request: Request, stored: StoredResource, fhir_base: str) -> Response:
    headers = resource_headers(stored, fhir_base, False)
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in inm.split(",")}
        if str(stored.version_id) in tags or "*" in tags:
            return Response(status_code=304, headers=headers)
    return fhir_response(stored.content, 200, headers)
