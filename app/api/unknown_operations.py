"""Operations SafeFlag does not serve: `GET|POST /fhir/$name`, `/fhir/<Type>/$name` and
`/fhir/<Type>/<id>/$name` for any name the FHIR router has no literal entry for there
(`Patient/$everything`, or one of ours on the wrong type such as `Flag/$safeguarding-summary`) answer
400 with issue code `not-supported` naming the operation, instead of reading `$name` as a logical id;
an operation served there with another method is 405 with `Allow` (`app.api.router.unknown_operation`).
Their `${name}` templates rank below every literal and above every `{parameter}`."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from app.api.router import unknown_operation


async def system_operation(name: str, request: Request) -> Response:
    raise unknown_operation(request, name)


async def type_operation(resource_type: str, name: str, request: Request) -> Response:
    raise unknown_operation(request, name, resource_type)


async def instance_operation(resource_type: str, res_id: str, name: str, request: Request) -> Response:
    raise unknown_operation(request, name, resource_type, res_id)
