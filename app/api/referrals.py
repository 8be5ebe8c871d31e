"""Endpoints for MASH referral copies: the Binary read in native form
(https://hl7.org/fhir/R4/binary.html#rest: no Accept check, the bytes go out with their own content
type) and the quality-review queue operation
`GET /fhir/DocumentReference/$qa-queue[?organization=Organization/x][&_count=][&_offset=]`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from app.api.deps import settings_of, unit_of_work
from app.api.responses import answer_response, fhir_response, http_date, query_parameter, read_response
from app.api.router import IdPath
from app.errors import BadRequest, Issue
from app.fhir.binary import native, wants_resource
from app.interactions.outcomes import answer_read, http_date_value
from app.safeguarding.referral_qa import qa_queue
from app.safeguarding.referral_rules import organization_param
from app.vocabulary import canonical

TAGS = ["MASH referral copies"]
QA_QUEUE = canonical("OperationDefinition", "qa-queue")
QUEUE_PARAMS = ("organization", "_count", "_offset")
QA_QUEUE_DOC: dict[str, Any] = {"tags": TAGS, "openapi_extra": {"parameters": [
    query_parameter("organization", "Organization/<id>: copies of this organisation")]}}


def refuse_unknown(request: Request, known: tuple[str, ...], operation: str) -> None:
    """Operation parameters are few and a misspelt one would silently widen the answer: 400 for it
    (`_format` and `_pretty` are always allowed)."""
    unknown = sorted({k for k in request.query_params if k not in (*known, "_format", "_pretty")})
    if unknown:
        raise BadRequest(issues=[
            Issue("not-supported", f"Unknown parameter '{u}' for {operation} (known: {', '.join(known)})",
                  expression=(u,), msg_id="SF-0953")
            for u in unknown
        ])


async def read_binary(res_id: IdPath, request: Request) -> Response:
    """The Binary resource for FHIR clients; its bytes, with its own content type, for everyone else."""
    as_resource = wants_resource(request.headers.get("accept"), request.query_params.get("_format"))
    async with unit_of_work(request) as svc:
        stored = await svc.read("Binary", res_id)
    if as_resource:
        return read_response(request, stored)
    answer = answer_read(stored, request.headers.get("if-none-match"),
                         http_date_value(request.headers.get("if-modified-since")))
    if answer.status == 304:
        return answer_response(answer)
    raw, content_type = native(stored.content)
    headers = {"ETag": stored.etag, "Last-Modified": http_date(stored),
               # a stored HTML referral must never run as a page of this origin
               "Content-Security-Policy": "sandbox", "Content-Disposition": f'inline; filename="{stored.id}"'}
    return Response(content=raw, media_type=content_type, headers=headers)


async def qa_queue_operation(request: Request) -> Response:
    """Current referral copies awaiting quality review, oldest first (a searchset Bundle)."""
    refuse_unknown(request, QUEUE_PARAMS, "DocumentReference/$qa-queue")
    organization = request.query_params.get("organization")
    org = organization_param(organization, settings_of(request).fhir_base) if organization is not None else None
    async with unit_of_work(request) as svc:
        bundle = await qa_queue(svc, org, list(request.query_params.multi_items()))
    return fhir_response(bundle)
