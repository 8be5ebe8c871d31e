"""Request plumbing shared by the routes: the app context, JSON bodies with size, media-type and
nesting checks, content negotiation (https://hl7.org/fhir/R4/http.html#mime-type).

Every way a body can be unusable ends here as a 400/406/413/415 OperationOutcome: too large (by
Content-Length or, for a chunked body, while it streams in), not JSON, not UTF-8, nested deeper than
any FHIR resource needs (which would otherwise exhaust the recursion of the validators), an object
with the same member twice (RFC 8259 leaves its meaning open; a parser keeping the last one would let
a client hide a value from whatever reads the first), or a `Content-Type` that is no media type.

A body sent with `Content-Encoding: gzip` or `deflate` (HAPI's `GZipContentInterceptor`) is inflated
as it streams in, and the size limit applies to the inflated body, so a small body that inflates
without end (a "zip bomb") is refused with 413 after at most the limit's worth of memory. Any other
content coding is 415 (RFC 9110 section 15.5.16).

The `fhirVersion` media-type parameter (https://hl7.org/fhir/R4/http.html#version-parameter) names
the FHIR version a client sends or wants: this server speaks R4 only, so a `Content-Type` naming
another version is 415 and an `Accept` (or `_format`) asking only for another version is 406.
"""

from __future__ import annotations

import json
import re
import zlib
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import orjson
from fastapi import Depends, Request

from app.errors import BadRequest, FhirError, NotAcceptable, PayloadTooLarge, UnsupportedMediaType
from app.interactions.service import FhirService
from app.observability import request_id_var
from app.ports import UnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.config import Settings
    from app.security.principal import Principal

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")
JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")
# Deepest nesting of JSON arrays/objects accepted. A Bundle entry's contained resource's nested
# extension is about 12 deep; 64 is generous and far below Python's recursion limit.
MAX_DEPTH = 64
_BOM = b"\xef\xbb\xbf"
# RFC 9110 section 8.3.1: type "/" subtype, each a token
_MEDIA_TYPE = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+$")
# the end of an object member's name: a closing quote and the colon (a string's own quotes are escaped)
_NAME_END = re.compile(rb'"[ \t\r\n]*:')
# `fhirVersion` values meaning R4: R4 gives the major.minor version ("4.0"); 4.0.1 names the same release
FHIR_VERSIONS = ("4.0", "4.0.1")
_FHIR_VERSION = re.compile(r";\s*fhirversion\s*=\s*\"?([^;,\"\s]*)", re.IGNORECASE)
# Content-Encoding -> zlib window bits: gzip framing, and HTTP's "deflate" (the zlib format, RFC 9110 8.4.1.2)
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Context(UnitOfWork, Protocol):
    """The app's context as the routes use it (`app.state.ctx`, built by app/main.py from app/context.py):
    a job's UnitOfWork whose transactions are the interaction engine itself, and the session factory."""

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...

    def unit_of_work(
        self, principal: Principal | None = None, *, request_id: str | None = None,
        client_address: str | None = None, scheduled: bool = False, metrics: object = None,
    ) -> AbstractAsyncContextManager[FhirService]: ...


def context_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def get_context(request: Request) -> Context:
    return context_of(request)


ContextDep = Annotated[Context, Depends(get_context)]


def settings_of(request: Request) -> Settings:
    return context_of(request).settings


async def check_accept(request: Request) -> None:
    """406 for XML (not implemented); JSON, `*/*` and no Accept at all are served JSON.

    Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread pool,
    a thread hop per dependency per request."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() in JSON_FORMATS:
            if not _is_r4(fmt):
                raise NotAcceptable(f"_format={fmt[:200]} asks for another FHIR version; this server speaks FHIR R4 "
                                    "only (fhirVersion=4.0)", msg_id="SF-0030", expression="_format")
            return
        raise NotAcceptable(f"_format={fmt} is not supported; this server speaks application/fhir+json",
                            msg_id="SF-0010", expression="_format")
    accept = request.headers.get("accept")
    if not accept:
        return
    ranges = accept.split(",")
    if any(_json_range(r.split(";")[0].strip().lower()) and _is_r4(r) for r in ranges):
        return
    if any(_json_range(r.split(";")[0].strip().lower()) for r in ranges):
        raise NotAcceptable(f"Cannot produce '{accept[:200]}': this server speaks FHIR R4 only (fhirVersion=4.0)",
                            msg_id="SF-0030")
    raise NotAcceptable(f"Cannot produce '{accept}'; this server speaks application/fhir+json", msg_id="SF-0010")


def _json_range(media_range: str) -> bool:
    return media_range in JSON_TYPES or media_range in ("*/*", "application/*", "") or media_range.endswith("+json")


def _is_r4(media_type_text: str) -> bool:
    """False when a media type's `fhirVersion` parameter names another FHIR version than R4."""
    if "=" not in media_type_text:  # no parameter at all: the common case, decided without a regex
        return True
    found = _FHIR_VERSION.search(media_type_text)
    return found is None or found.group(1) in FHIR_VERSIONS


def media_type(request: Request) -> str:
    """The request's media type, lower case ("" when there is no `Content-Type`); 415 for a header
    that is not a media type at all (`;;;===///` was once read as no header)."""
    header = request.headers.get("content-type")
    if header is None:
        return ""
    found = header.split(";")[0].strip().lower()
    if not _MEDIA_TYPE.match(found):
        raise UnsupportedMediaType(f"Content-Type '{header[:100]}' is not a media type; send application/fhir+json",
                                   msg_id="SF-0017")
    if not _is_r4(header):
        raise UnsupportedMediaType(f"Content-Type '{header[:100]}' names another FHIR version; this server speaks "
                                   "FHIR R4 only (fhirVersion=4.0)", msg_id="SF-0030")
    return found


def _too_large(limit: int, coding: str | None = None) -> PayloadTooLarge:
    inflated = f" once {coding}-decoded" if coding else ""
    return PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes{inflated}", msg_id="SF-0013")


def content_coding(request: Request) -> str | None:
    """The request body's content coding (None for none or `identity`); 415 for one not supported."""
    header = request.headers.get("content-encoding")
    if header is None:
        return None
    coding = header.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding not in _CODINGS:
        raise UnsupportedMediaType(f"Content-Encoding '{header[:100]}' is not supported (supported: gzip, deflate)",
                                   msg_id="SF-0031",
                                   headers={"Accept-Encoding": "gzip, deflate"})
    return coding


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decoded from its content coding, refused (413) as soon as the body as sent or as
    decoded passes `limit` bytes."""
    coding = content_coding(request)
    length = request.headers.get("content-length")
    if length and length.isascii() and length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    if coding is not None:
        return await _inflate(request, limit, coding)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _inflate(request: Request, limit: int, coding: str) -> bytes:
    """Decode a gzip/deflate body chunk by chunk, never holding more than `limit` + 1 decoded bytes."""
    inflater = zlib.decompressobj(_CODINGS[coding])
    chunks: list[bytes] = []
    sent = size = 0
    try:
        async for chunk in request.stream():
            sent += len(chunk)
            if sent > limit:
                raise _too_large(limit)
            data = chunk
            while data and not inflater.eof:
                out = inflater.decompress(data, limit + 1 - size)  # at most one byte past the limit
                size += len(out)
                if size > limit:
                    raise _too_large(limit, coding)
                chunks.append(out)
                data = inflater.unconsumed_tail
        complete = inflater.eof
    except zlib.error as exc:
        raise BadRequest(f"The request body is not valid {coding} data: {exc}", msg_id="SF-0032") from exc
    if not complete:
        raise BadRequest(f"The request body ends before its {coding} data does", msg_id="SF-0032")
    return b"".join(chunks)


def member_count(value: Any, limit: int = MAX_DEPTH) -> int | None:
    """How many object members `value` holds in all, or None when arrays/objects nest deeper than
    `limit` (iterative: safe on any depth orjson accepts)."""
    members = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            members += len(node)
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return None
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return members


class _Repeated(dict):  # type: ignore[type-arg]
    """An object that named a member more than once (`repeated` says which)."""

    repeated = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    marked = _Repeated(found)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.repeated = key
            break
        seen.add(key)
    return marked


def _repeated_member(value: Any) -> str | None:
    """The FHIRPath-style location of the first member named twice in one object, if any."""
    stack: list[tuple[Any, str]] = [(value, value.get("resourceType", "") if isinstance(value, dict) else "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Repeated):
            return f"{path}.{node.repeated}" if path else node.repeated
        if isinstance(node, dict):
            stack.extend((v, f"{path}.{k}" if path else k) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(node))))
    return None


def check_repeated_members(raw: bytes, members: int) -> None:
    """400 when an object names a member twice. orjson keeps the last silently, so: every member's
    name ends in `"` then `:`, and those endings are counted (a string can add to the count, through
    an escaped quote before a colon, never take from it); only when there are more endings than the
    parsed members is the body parsed again, by the standard library, object by object."""
    if len(_NAME_END.findall(raw)) <= members:
        return
    try:
        where = _repeated_member(json.loads(raw, object_pairs_hook=_pairs))
    except ValueError:  # orjson read it; the two parsers differ only on what neither accepts here
        return
    if where is not None:
        name = where.rsplit(".", 1)[-1]
        raise BadRequest(f"The JSON object at {where.rpartition('.')[0] or 'the top level'} names '{name}' more "
                         "than once", msg_id="SF-0016", expression=where, code="structure")


def parse_json(raw: bytes) -> Any:
    """Bytes -> JSON value, or a 400 saying why not."""
    raw = raw.removeprefix(_BOM)  # RFC 8259 section 8.1: a parser MAY ignore a byte order mark
    if not raw.strip():
        raise BadRequest("The request body is empty", msg_id="SF-0012")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}", msg_id="SF-0012") from exc
    members = member_count(value)
    if members is None:
        raise BadRequest(f"The request body nests JSON deeper than {MAX_DEPTH} levels", msg_id="SF-0015")
    check_repeated_members(raw, members)
    return value


async def json_body(request: Request, *, patch: bool = False) -> Any:
    mt = media_type(request)
    allowed = JSON_TYPES + PATCH_TYPES if patch else JSON_TYPES
    if mt in XML_TYPES:
        raise UnsupportedMediaType("XML is not supported; send application/fhir+json", msg_id="SF-0011")
    if mt and mt not in allowed:
        raise UnsupportedMediaType(f"Content type '{mt}' is not supported; send application/fhir+json",
                                   msg_id="SF-0011")
    return parse_json(await read_body(request, settings_of(request).max_body_bytes))


def unit_of_work(request: Request) -> AbstractAsyncContextManager[FhirService]:
    """The request's unit of work, as the authenticated principal (set by `app.api.auth.authenticate`)."""
    ctx: Context = request.app.state.ctx
    return ctx.unit_of_work(
        getattr(request.state, "principal", None),
        request_id=request_id_var.get(),
        client_address=request.client.host if request.client else None,
        # `X-Access-Context: scheduled`: a silent (still audited) read, no access notification
        scheduled=(request.headers.get("x-access-context") or "").strip().lower() == "scheduled",
        metrics=request.app.state.metrics,
    )


# The FHIR router's rows whose id it checks before they run (app/api/router.py), and the interaction each is.
ROUTE_INTERACTIONS = {"read": "read", "vread": "vread", "update": "update", "patch": "patch", "delete": "delete",
                      "history_instance": "history-instance"}


async def audit_refused_route(request: Request, error: FhirError) -> None:
    """A request its route refused before running (an id that breaks the FHIR id pattern) is an access
    attempt like any other: audited as the route's interaction, refused with `error`, in the unit of
    work every refused attempt is audited by. Unauthenticated requests never reach here (401 first)."""
    interaction = ROUTE_INTERACTIONS.get(getattr(request.scope.get("route"), "name", ""))
    if interaction is None or getattr(request.state, "principal", None) is None:
        return
    params = request.path_params
    try:
        async with unit_of_work(request) as svc:
            svc.guard.begin(interaction, params.get("resource_type"), params.get("res_id"))
            raise error
    except FhirError:
        pass
