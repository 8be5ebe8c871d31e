"""Authentication endpoints and the `authenticate` dependency (docs/api/security.md).

- `GET /fhir/.well-known/smart-configuration`: SMART discovery for Backend Services
  (https://hl7.org/fhir/smart-app-launch/conformance.html).
- `POST /auth/token`: client_credentials with a `private_key_jwt` assertion
  (https://hl7.org/fhir/smart-app-launch/backend-services.html); OAuth2 JSON errors (RFC 6749 5.2).
- `GET /auth/jwks`: the local issuer's public keys, for anyone verifying our tokens.
- `authenticate` / `PrincipalDep`: the Principal of the request's bearer token, or 401 with
  `WWW-Authenticate: Bearer ...` and an OperationOutcome (code `login`).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.api.deps import ContextDep, media_type, read_body
from app.errors import FhirError
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.security.backend import OAuthError, client_credentials
from app.security.clients import ASSERTION_ALGS
from app.security.principal import Principal
from app.security.runtime import SecurityRuntime

router = APIRouter(tags=["Security"])

FORM_LIMIT = 64 * 1024  # a token request is a few kB; FastAPI's form parser would read any size
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def get_security(request: Request) -> SecurityRuntime:
    """The app's SecurityRuntime (built in the lifespan; built here on first use otherwise)."""
    runtime: SecurityRuntime | None = getattr(request.app.state, "security", None)
    if runtime is None:
        runtime = SecurityRuntime.from_settings(request.app.state.ctx.settings)
        request.app.state.security = runtime
    return runtime


SecurityDep = Annotated[SecurityRuntime, Depends(get_security)]


async def authenticate(request: Request) -> Principal:
    """The FHIR router's guard and a FastAPI dependency alike: the bearer token's Principal, or 401."""
    security = await get_security(request)
    principal = await security.authenticate(request.headers.get("authorization"))
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


@router.get("/auth/jwks", name="jwks")
async def jwks(security: SecurityDep) -> Response:
    return _json(security.key.jwks(), headers={"Cache-Control": "public, max-age=300"})


def smart_configuration_body(security: SecurityRuntime) -> dict[str, Any]:
    scopes = ["system/*.cruds", "system/*.rs", "user/*.cruds", "user/*.rs"]
    scopes += [f"system/{t}.cruds" for t in SUPPORTED_TYPES]
    return {
        "issuer": security.issuer.issuer,
        "jwks_uri": security.issuer.issuer + "/jwks",
        "token_endpoint": security.token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": scopes,
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
    }


async def smart_configuration(request: Request) -> Response:
    """SMART discovery for Backend Services clients; needs no token."""
    return _json(smart_configuration_body(await get_security(request)), headers={"Cache-Control": "public, max-age=300"})


@router.post("/auth/token", name="token")
async def token(request: Request, ctx: ContextDep, security: SecurityDep) -> Response:
    try:
        try:
            form_type = media_type(request) == "application/x-www-form-urlencoded"
        except FhirError:  # a Content-Type that is no media type: an OAuth error here, not an OperationOutcome
            form_type = False
        if not form_type:
            raise OAuthError("invalid_request", "send the request as application/x-www-form-urlencoded")
        try:
            raw = await read_body(request, FORM_LIMIT)
            form = parse_qs(raw.decode("ascii"), keep_blank_values=True, strict_parsing=bool(raw),
                            max_num_fields=20)
        except (FhirError, ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_request", "the form body is malformed or too large") from None
        async with ctx.sessionmaker() as session, session.begin():
            body = await client_credentials(session, form, issuer=security.issuer, token_url=security.token_url,
                                            now=security.issuer.now())
    except OAuthError as exc:
        return _json(exc.body(), exc.status, NO_STORE)
    return _json(body, headers=NO_STORE)
