"""Routes for MASH referral copies (contract section 5): the Binary read in native form
(https://hl7.org/fhir/R4/binary.html#rest) and the quality-review queue operation
`GET /fhir/DocumentReference/$qa-queue[?organization=Organization/x][&_count=][&_offset=]`.

Include this router BEFORE `interactions.router`: its paths would otherwise be taken by the generic
`/fhir/{type}/{id}` routes (whose Accept check refuses non-FHIR types, and whose id pattern refuses `$`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from app.api.auth import authenticate
from app.api.deps import ContextDep, check_accept, unit_of_work
from app.api.responses import answer_response, fhir_response, http_date, read_response
from app.errors import BadRequest, Issue
from app.fhir.binary import native, wants_resource
from app.interactions.capabilities import register_operation
from app.interactions.outcomes import answer_read, http_date_value
from app.safeguarding.referral_qa import qa_queue
from app.safeguarding.referral_rules import organization_param

router = APIRouter(prefix="/fhir", dependencies=[Depends(authenticate)], tags=["MASH referral copies"])

QA_QUEUE = "https://fhir.safeflag.example/OperationDefinition/qa-queue"
register_operation("qa-queue", QA_QUEUE, ("DocumentReference",))

IdPath = Annotated[str, Path(description="Logical id", pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
QUEUE_PARAMS = ("organization", "_count", "_offset")


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


@router.get("/Binary/{res_id}", name="read_binary")
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


@router.get("/DocumentReference/$qa-queue", name="qa_queue", dependencies=[Depends(check_accept)])
async def qa_queue_operation(
    request: Request,
    ctx: ContextDep,
    organization: Annotated[str | None, Query(description="Organization/<id>: copies of this organisation")] = None,
) -> Response:
    """Current referral copies awaiting quality review, oldest first (a searchset Bundle)."""
    refuse_unknown(request, QUEUE_PARAMS, "DocumentReference/$qa-queue")
    org = organization_param(organization, ctx.settings.fhir_base) if organization is not None else None
    async with unit_of_work(request) as svc:
        bundle = await qa_queue(svc, org, list(request.query_params.multi_items()))
    return fhir_response(bundle)
