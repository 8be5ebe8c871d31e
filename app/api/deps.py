"""Request plumbing shared by the routes: the app context, JSON bodies with size, media-type and
nesting checks, content negotiation (https://hl7.org/fhir/R4/http.html#mime-type).

Every way a body can be unusable ends here as a 400/406/413/415 OperationOutcome: too large (by
Content-Length or, for a chunked body, while it streams in), not JSON, not UTF-8, nested deeper than
any FHIR resource needs (which would otherwise exhaust the recursion of the validators).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from app.context import AppContext
from app.errors import BadRequest, NotAcceptable, PayloadTooLarge, UnsupportedMediaType
from app.fhir.service import FhirService
from app.observability import request_id_var

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")
JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")
# Deepest nesting of JSON arrays/objects accepted. A Bundle entry's contained resource's nested
# extension is about 12 deep; 64 is generous and far below Python's recursion limit.
MAX_DEPTH = 64
_BOM = b"\xef\xbb\xbf"


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


async def check_accept(request: Request) -> None:
    """406 for XML (not implemented); JSON, `*/*` and no Accept at all are served JSON.

    Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread pool,
    a thread hop per dependency per request."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() in JSON_FORMATS:
            return
        raise NotAcceptable(f"_format={fmt} is not supported; this server speaks application/fhir+json",
                            msg_id="SF-0010", expression="_format")
    accept = request.headers.get("accept")
    if not accept:
        return
    types = [p.split(";")[0].strip().lower() for p in accept.split(",")]
    if any(t in JSON_TYPES or t in ("*/*", "application/*", "") or t.endswith("+json") for t in types):
        return
    raise NotAcceptable(f"Cannot produce '{accept}'; this server speaks application/fhir+json", msg_id="SF-0010")


def media_type(request: Request) -> str:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isascii() and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes", msg_id="SF-0013")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes", msg_id="SF-0013")
        chunks.append(chunk)
    return b"".join(chunks)


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when arrays/objects nest deeper than `limit` (iterative: safe on any depth orjson accepts)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_json(raw: bytes) -> Any:
    """Bytes -> JSON value, or a 400 saying why not."""
    raw = raw.removeprefix(_BOM)  # RFC 8259 section 8.1: a parser MAY ignore a byte order mark
    if not raw.strip():
        raise BadRequest("The request body is empty", msg_id="SF-0012")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}", msg_id="SF-0012") from exc
    if too_deep(value):
        raise BadRequest(f"The request body nests JSON deeper than {MAX_DEPTH} levels", msg_id="SF-0015")
    return value


async def json_body(request: Request, ctx: AppContext, *, patch: bool = False) -> Any:
    mt = media_type(request)
    allowed = JSON_TYPES + PATCH_TYPES if patch else JSON_TYPES
    if mt in XML_TYPES:
        raise UnsupportedMediaType("XML is not supported; send application/fhir+json", msg_id="SF-0011")
    if mt and mt not in allowed:
        raise UnsupportedMediaType(f"Content type '{mt}' is not supported; send application/fhir+json",
                                   msg_id="SF-0011")
    return parse_json(await read_body(request, ctx.settings.max_body_bytes))


def unit_of_work(request: Request) -> AbstractAsyncContextManager[FhirService]:
    """The request's unit of work, as the authenticated principal (set by `app.api.auth.authenticate`)."""
    ctx: AppContext = request.app.state.ctx
    return ctx.unit_of_work(
        getattr(request.state, "principal", None),
        request_id=request_id_var.get(),
        client_address=request.client.host if request.client else None,
        # `X-Access-Context: scheduled`: a silent (still audited) read, no access notification
        scheduled=(request.headers.get("x-access-context") or "").strip().lower() == "scheduled",
        metrics=request.app.state.metrics,
    )
