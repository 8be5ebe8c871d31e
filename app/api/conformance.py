"""Read-only endpoints for the conformance resources of `fhir_profiles/` (app/fhir/conformance.py):
`GET /fhir/{StructureDefinition|CodeSystem|ValueSet|SearchParameter|ConceptMap|OperationDefinition}[/{id}]`;
every write interaction answers the policy's 405 (`policy.refuse_interaction`). Each read and search is decided by the policy and audited like any
other; every authenticated role may read them, as they describe the API rather than anyone's record.
`entries()` gives the FHIR router their rows (literal type names: they win over `{resource_type}`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from app.api.deps import unit_of_work
from app.api.responses import fhir_response, preferences
from app.api.router import Entry, unknown_operation
from app.fhir import conformance
from app.fhir.conformance import CONFORMANCE_TYPES
from app.security.policy import refuse_interaction

TAGS = ["Conformance resources"]
CONFORMANCE = "conformance"  # the policy's name for reading these (every role may)
Endpoint = Callable[..., Awaitable[Response]]
_OK: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/fhir+json": {"schema": {"type": "object"}}}}
}


def _search(rtype: str) -> Endpoint:
    async def search_type(request: Request) -> Response:
        query = list(request.query_params.multi_items())
        settings = request.app.state.ctx.settings
        async with unit_of_work(request) as svc:
            svc.guard.begin("search-type", rtype, query=f"{rtype}?{urlencode(query)}")
            await svc.guard.authorize("search", rtype, operation=CONFORMANCE)
            bundle = conformance.search(
                rtype,
                query,
                fhir_base=settings.fhir_base,
                default_count=settings.default_count,
                max_count=settings.max_count,
                now=svc.guard.now(),  # the access's time, as its audit record's
                strict=preferences(request).strict,
            )
            await svc.guard.audited()
        return fhir_response(bundle)

    return search_type


def _read(rtype: str) -> Endpoint:
    async def read(res_id: str, request: Request) -> Response:
        if res_id.startswith("$"):  # `$name` in the id's place is an operation, not an id
            raise unknown_operation(request, res_id[1:], rtype)
        async with unit_of_work(request) as svc:
            svc.guard.begin("read", rtype, res_id)
            await svc.guard.authorize("read", rtype, operation=CONFORMANCE)
            resource = conformance.read(rtype, res_id)
            await svc.guard.audited()
        return fhir_response(resource)

    return read


async def _refused(rtype: str, interaction: str, res_id: str | None, request: Request) -> Response:
    refusal = refuse_interaction(rtype, interaction)
    assert refusal is not None  # the policy refuses every write of these types
    async with unit_of_work(request) as svc:  # the refused attempt is audited like any other
        svc.guard.begin(interaction, rtype, res_id)
        await svc.guard.authorize(interaction, rtype, operation=CONFORMANCE)  # who may use them; then: read-only
    raise refusal.error(rtype, res_id)  # with no principal (the server's own work) the guard decides nothing


def _refuse_type(rtype: str, interaction: str) -> Endpoint:
    async def refuse(request: Request) -> Response:
        return await _refused(rtype, interaction, None, request)

    return refuse


def _refuse_instance(rtype: str, interaction: str) -> Endpoint:
    async def refuse(res_id: str, request: Request) -> Response:
        return await _refused(rtype, interaction, res_id, request)

    return refuse


_WRITES = (("POST", "create"), ("PUT", "update"), ("PATCH", "patch"), ("DELETE", "delete"))
_REFUSED: dict[int | str, dict[str, Any]] = {
    405: {"description": "OperationOutcome: conformance resources are read-only"}
}


def entries() -> list[Entry]:
    """Search and read of each conformance type, and its write interactions refused (405)."""
    out: list[Entry] = []
    for rtype in CONFORMANCE_TYPES:
        key = rtype.lower()
        out += [Entry("GET", f"/{rtype}", _search(rtype), f"search_{key}", doc={"tags": TAGS, "responses": _OK}),
                Entry("GET", f"/{rtype}/{{res_id}}", _read(rtype), f"read_{key}", doc={"tags": TAGS, "responses": _OK})]
        for method, interaction in _WRITES:
            refused = {"tags": TAGS, "responses": _REFUSED}
            out.append(Entry(method, f"/{rtype}", _refuse_type(rtype, interaction), f"{interaction}_type_{key}",
                             doc=refused))
            if method != "POST":  # POST to an instance is no FHIR interaction at all
                out.append(Entry(method, f"/{rtype}/{{res_id}}", _refuse_instance(rtype, interaction),
                                 f"{interaction}_{key}", doc=refused))
    return out
