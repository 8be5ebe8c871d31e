"""SMART Backend Services: the client_credentials grant with a `private_key_jwt` client assertion
(https://hl7.org/fhir/smart-app-launch/backend-services.html, RFC 7523, RFC 6749 section 5.2).

The client posts `grant_type=client_credentials`, `client_assertion_type=urn:ietf:params:oauth:
client-assertion-type:jwt-bearer`, `client_assertion` and `scope`. The assertion must be signed
RS384 or ES384 by a key (named by `kid`) of the client's registered JWKS, with `iss` = `sub` = the
client id, `aud` = our token endpoint URL, `exp` at most five minutes ahead (plus the 60 s skew we
allow everywhere), and a `jti` never seen before (kept until the assertion expires). The access token
granted is minted by the local issuer with role `system`, the client's organisation, `client_id`, and
the requested scopes intersected with the registered ones; five minutes long, as the spec suggests.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from app.security.clients import ASSERTION_ALGS, get_client, spend_jti
from app.security.scopes import ScopeSet, intersect, parse_scope
from app.security.tokens import MAX_SKEW, TokenError, TokenIssuer, decode_signed, key_fits

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300
ACCESS_TOKEN_TTL = 300


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error response: {"error", "error_description"} with a 400 or 401."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def granted_scope(requested: str, registered: str) -> str:
    """requested ∩ registered, `system/` scopes only, in a stable order."""
    reg = [s for s in ScopeSet.parse(registered).scopes if s.context == "system"]
    out: dict[str, None] = {}
    for part in requested.split():
        req = parse_scope(part)
        if req is None or req.context != "system":
            continue
        for r in reg:
            both = intersect(req, r)
            if both is not None:
                out[str(both)] = None
    return " ".join(out)


def _form_value(form: Mapping[str, list[str]], name: str, *, required: bool = True) -> str:
    values = form.get(name, [])
    if len(values) > 1:
        raise OAuthError("invalid_request", f"parameter '{name}' was sent more than once")
    if not values or not values[0]:
        if required:
            raise OAuthError("invalid_request", f"parameter '{name}' is required")
        return ""
    return values[0]


def _assertion_claims(assertion: str, jwks: dict[str, Any], client_id: str, token_url: str,
                      now: float) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise _invalid_client("client_assertion is not a well-formed JWT") from None
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ASSERTION_ALGS:
        raise _invalid_client(f"client_assertion must be signed RS384 or ES384, not {str(alg)[:20]}")
    if header.get("typ", "JWT") != "JWT":
        raise _invalid_client("client_assertion must have typ JWT")
    jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == kid), None) if isinstance(kid, str) else None
    if jwk is None:
        raise _invalid_client("client_assertion kid is not one of the client's registered keys")
    if not key_fits(alg, jwk):
        raise _invalid_client(f"client_assertion algorithm {alg} does not match the registered key")
    messages = {
        "signature": "client_assertion signature does not verify",
        "missing": "client_assertion has no '{claim}' claim",
        "audience": f"client_assertion aud must be the token endpoint {token_url}",
        "issuer": "client_assertion iss must be the client_id",
        "other": "client_assertion could not be verified",
    }
    try:
        claims = decode_signed(assertion, jwk, alg, audience=token_url, issuer=client_id,
                               require=["iss", "sub", "aud", "exp", "jti"], messages=messages)
    except TokenError as exc:
        raise _invalid_client(str(exc)) from None
    if claims.get("sub") != client_id:
        raise _invalid_client("client_assertion sub must be the client_id")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise _invalid_client("client_assertion exp is not a number")
    if now > exp + MAX_SKEW:
        raise _invalid_client("client_assertion has expired")
    if exp > now + MAX_ASSERTION_LIFETIME + MAX_SKEW:
        raise _invalid_client("client_assertion exp is more than five minutes in the future")
    if not isinstance(claims.get("jti"), str) or not 0 < len(claims["jti"]) <= 256:
        raise _invalid_client("client_assertion jti must be a string of at most 256 characters")
    return claims


def _unverified_iss(assertion: str) -> str:
    try:
        iss = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        raise _invalid_client("client_assertion is not a well-formed JWT") from None
    if not isinstance(iss, str) or not iss:
        raise _invalid_client("client_assertion has no 'iss' claim")
    return iss


async def client_credentials(
    session: AsyncSession, form: Mapping[str, list[str]], *, issuer: TokenIssuer, token_url: str, now: float
) -> dict[str, Any]:
    """The token response for a valid request, or OAuthError. Writes the spent jti in `session`."""
    grant = _form_value(form, "grant_type")
    if grant != "client_credentials":
        raise OAuthError("unsupported_grant_type", "only grant_type=client_credentials is supported")
    if _form_value(form, "client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = _form_value(form, "client_assertion")
    requested = _form_value(form, "scope")
    client_id = _unverified_iss(assertion)
    client_form = _form_value(form, "client_id", required=False)
    if client_form and client_form != client_id:
        raise _invalid_client("client_id does not match the client_assertion issuer")
    reg = await get_client(session, client_id)
    if reg is None or not reg.active:
        raise _invalid_client("unknown client")
    claims = _assertion_claims(assertion, reg.jwks, client_id, token_url, now)
    scope = granted_scope(requested, reg.scope)
    if not scope:
        raise OAuthError("invalid_scope", "none of the requested scopes is registered for this client")
    expires = datetime.fromtimestamp(float(claims["exp"]) + MAX_SKEW, UTC).replace(tzinfo=None)
    current = datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
    if not await spend_jti(session, client_id, claims["jti"], expires, current):
        raise _invalid_client("client_assertion jti was already used")
    token = issuer.mint(sub=client_id, role="system", scope=scope, ttl=ACCESS_TOKEN_TTL, org=reg.org,
                        client_id=client_id)
    return {"access_token": token, "token_type": "bearer", "expires_in": ACCESS_TOKEN_TTL, "scope": scope}
