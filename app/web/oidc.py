"""OpenID Connect Authorization Code flow with PKCE (S256) against the configured provider, with Authlib.

Discovery (`SAFEFLAG_WEB_OIDC_DISCOVERY_URL`, by default `<issuer>/.well-known/openid-configuration`) is
read on first use and kept. `start` makes the authorization URL with a fresh state, nonce and PKCE
verifier, which the caller keeps server-side (the pending session row); `finish` exchanges the code
(with the verifier; a confidential client authenticates with its secret, a public one with PKCE alone),
then verifies the ID token: signature against the provider's JWKS, issuer, audience, expiry (60 s
leeway) and the nonce. Any failure is a `SignInFailed` with a reason fit for the audit trail.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError as OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc6749.errors import OAuth2Error
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.config import Settings

LEEWAY_S = 60
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]


class SignInFailed(Exception):
    """The provider's answer could not be turned into verified ID-token claims."""


class OidcClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuer = settings.web_oidc_issuer.rstrip("/") if settings.web_oidc_issuer else ""
        self.discovery_url = settings.web_oidc_discovery_url or f"{self.issuer}/.well-known/openid-configuration"
        self.redirect_url = settings.web_oidc_redirect_url or settings.base_url.rstrip("/") + "/app/auth/callback"
        self._metadata: dict[str, Any] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.issuer and self.settings.web_oidc_client_id)

    def _client(self) -> AsyncOAuth2Client:
        secret = self.settings.web_oidc_client_secret or None
        return AsyncOAuth2Client(
            client_id=self.settings.web_oidc_client_id, client_secret=secret,
            scope=self.settings.web_oidc_scopes, redirect_uri=self.redirect_url,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if secret else "none", timeout=10.0,
        )

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            try:
                async with httpx.AsyncClient(timeout=10.0) as http:
                    answer = await http.get(self.discovery_url)
                    answer.raise_for_status()
                    found = answer.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise SignInFailed(f"the identity provider's discovery document could not be read: {exc}") from None
            if not isinstance(found, dict) or found.get("issuer", "").rstrip("/") != self.issuer:
                raise SignInFailed("the identity provider's discovery document names another issuer")
            self._metadata = found
        return self._metadata

    async def start(self) -> tuple[str, dict[str, str]]:
        """The provider's authorization URL and what must be kept until the callback."""
        meta = await self.metadata()
        login = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
                 "verifier": secrets.token_urlsafe(48)}
        async with self._client() as client:
            url, _state = client.create_authorization_url(
                meta["authorization_endpoint"], state=login["state"], nonce=login["nonce"],
                code_verifier=login["verifier"])
        return str(url), login

    async def finish(self, login: dict[str, Any], code: str, now: int) -> dict[str, Any]:
        """Exchange the code and return the verified ID token's claims."""
        meta = await self.metadata()
        try:
            async with self._client() as client:
                token = await client.fetch_token(meta["token_endpoint"], grant_type="authorization_code",
                                                 code=code, code_verifier=login["verifier"])
            async with httpx.AsyncClient(timeout=10.0) as http:
                answer = await http.get(meta["jwks_uri"])
                answer.raise_for_status()
                keys = KeySet.import_key_set(answer.json())
        except (OAuthError, OAuth2Error, httpx.HTTPError, JoseError, ValueError, KeyError) as exc:
            raise SignInFailed(f"the identity provider refused the sign-in: {type(exc).__name__}: {exc}") from None
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str):
            raise SignInFailed("the identity provider sent no ID token")
        try:
            decoded = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                now=now, leeway=LEEWAY_S,
                iss={"essential": True, "value": meta["issuer"]},
                aud={"essential": True, "value": self.settings.web_oidc_client_id},
                exp={"essential": True}, sub={"essential": True},
                nonce={"essential": True, "value": login["nonce"]},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise SignInFailed(f"the ID token did not verify: {exc}") from None
        return dict(decoded.claims)
