"""The security layer an app runs on: the local issuer key, the token verifier (with its JWKS cache and
HTTP client), the token minter, and bearer authentication with RFC 6750 error responses.

Built once at start-up by `SecurityRuntime.from_settings`, which refuses to start (InsecureKeyError,
SecurityConfigError) rather than run with a world-readable or published key or a bad issuer list.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from app.config import Settings
from app.errors import Issue, NotAuthenticated
from app.security.keys import SigningKey, load_or_create_issuer_key
from app.security.principal import ClaimError, Principal
from app.security.tokens import (
    VERIFIED_CACHE_SIZE,
    JwksCache,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    parse_issuers,
)

REALM = "safeflag"
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
_UNSAFE = re.compile(r'[^A-Za-z0-9 ,.:;()\'/_+-]')  # RFC 6750 error_description: %x20-21 / %x23-5B / %x5D-7E


def local_issuer(settings: Settings) -> str:
    return settings.base_url.rstrip("/") + "/auth"


def token_endpoint(settings: Settings) -> str:
    return local_issuer(settings) + "/token"


def missing_token() -> NotAuthenticated:
    return NotAuthenticated(
        "Authentication required: send 'Authorization: Bearer <token>'",
        msg_id="SF-0810",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
    )


def invalid_token(description: str) -> NotAuthenticated:
    safe = _UNSAFE.sub("", description)[:200]
    return NotAuthenticated(
        issues=[Issue("login", f"Invalid bearer token: {safe}", msg_id="SF-0811")],
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token", error_description="{safe}"'},
    )


@dataclass
class SecurityRuntime:
    settings: Settings
    key: SigningKey
    issuer: TokenIssuer
    verifier: TokenVerifier
    http: httpx.AsyncClient | None = None
    # The Principal of each token the verifier holds: a client sends the same token with every request,
    # and a Principal (frozen, its scopes parsed) depends on nothing but the token's claims. Served only
    # after `verify` accepted the token again (its times are checked on every use), so an expired token
    # is refused as before; what the database says about the principal is added per request (enrich).
    _principals: dict[str, Principal] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, now: Callable[[], float] = time.time) -> SecurityRuntime:
        key = load_or_create_issuer_key(settings.data_dir)
        external = parse_issuers(settings.auth_issuers)
        http = httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False) if external else None
        audience = settings.fhir_base
        issuer = TokenIssuer(local_issuer(settings), audience, key, now=now)
        verifier = TokenVerifier(local_issuer(settings), key, audience, external,
                                 JwksCache(http) if http else None, now=now)
        return cls(settings, key, issuer, verifier, http)

    @property
    def token_url(self) -> str:
        return token_endpoint(self.settings)

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization` header value, or NotAuthenticated (401)."""
        if not authorization or not authorization[:7].lower().startswith("bearer "):
            raise missing_token()
        m = _BEARER.match(authorization)
        if not m:
            raise invalid_token("the Authorization header is not 'Bearer <token>'")
        token = m.group(1)
        try:
            claims = await self.verifier.verify(token)
            principal = self._principals.get(token)
            if principal is None:
                principal = Principal.from_claims(claims, base=self.settings.fhir_base)
                if len(self._principals) >= VERIFIED_CACHE_SIZE:
                    self._principals.clear()  # bounded as the verifier's cache is
                self._principals[token] = principal
            return principal
        except (TokenError, ClaimError) as exc:
            raise invalid_token(str(exc)) from None

    async def identify(self, authorization: str) -> str | None:
        """`iss|client_id` (or `iss|sub`) of a bearer token that verifies, else None: what the rate
        limit keys a client by (never claims that were not verified)."""
        m = _BEARER.match(authorization)
        if not m:
            return None
        try:
            claims = await self.verifier.verify(m.group(1))
        except TokenError:
            return None
        return f"{claims['iss']}|{claims.get('client_id') or claims['sub']}"

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()
