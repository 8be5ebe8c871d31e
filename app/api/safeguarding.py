"""Safeguarding operations: `GET /fhir/Patient/{id}/$safeguarding-summary`, the record-banner summary
(built by app/safeguarding/summary.py). Thin endpoint: parse, call, render."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from app.api.deps import unit_of_work
from app.api.responses import fhir_response
from app.api.router import IdPath
from app.safeguarding.access import ACCESS_CONTEXT_HEADER, is_scheduled
from app.safeguarding.summary import safeguarding_summary

SUMMARY_DOC: dict[str, Any] = {
    "tags": ["FHIR operations"],
    "responses": {
        200: {
            "description": "searchset Bundle: the Patient, active Flags with their authors, open "
            "notifications and acknowledgement Tasks, the last 25 accesses"
        }
    },
}


async def summary(res_id: IdPath, request: Request) -> Response:
    scheduled = is_scheduled(request.headers.get(ACCESS_CONTEXT_HEADER))
    async with unit_of_work(request) as svc:
        bundle = await safeguarding_summary(svc, res_id, scheduled=scheduled)
    return fhir_response(bundle)
