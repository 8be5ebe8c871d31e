"""OpenID Connect Authorization Code flow with PKCE (S256) against the configured provider: Authlib
builds the authorization request and the PKCE challenge, httpx carries the exchange, joserfc (Authlib's
JOSE library) verifies the ID token.

Discovery (`SAFEFLAG_WEB_OIDC_DISCOVERY_URL`, by default `<issuer>/.well-known/openid-configuration`) is
read on first use and kept. `start` makes the authorization URL with a fresh state, nonce and PKCE
verifier, which the caller keeps server-side (the pending session row); `finish` exchanges the code
(with the verifier; a confidential client authenticates with its secret, a public one with PKCE alone),
then verifies the ID token: signature against the provider's JWKS, issuer, audience, expiry (60 s
leeway) and the nonce. Any failure is a `SignInFailed` with a reason fit for the audit trail.

`end_session` gives what RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) posts to the
provider's `end_session_endpoint`, when its discovery document has one: the ID token as `id_token_hint`,
`client_id`, and `post_logout_redirect_uri` (`/app/signed-out` beside the redirect URL), so that signing out
of SafeFlag ends the provider's session too (NHS CIS2's, Entra ID's). It is posted, not put in a URL: the
ID token names the person.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.config import Settings

LEEWAY_S = 60
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]


class SignInFailed(Exception):
    """The provider's answer could not be turned into verified ID-token claims."""


def _oauth_error(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return "no OAuth error"
    description = body.get("error_description")
    return (str(body["error"]) + (f": {description}" if isinstance(description, str) else ""))[:160]


class OidcClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuer = settings.web_oidc_issuer.rstrip("/") if settings.web_oidc_issuer else ""
        self.discovery_url = settings.web_oidc_discovery_url or f"{self.issuer}/.well-known/openid-configuration"
        self.redirect_url = settings.web_oidc_redirect_url or settings.base_url.rstrip("/") + "/app/auth/callback"
        self._metadata: dict[str, Any] | None = None

    @property
    def post_logout_url(self) -> str:
        """Where the provider sends the browser back after its own sign-out."""
        return self.redirect_url.removesuffix("/auth/callback") + "/signed-out"

    @property
    def configured(self) -> bool:
        return bool(self.issuer and self.settings.web_oidc_client_id)

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
        url = prepare_grant_uri(
            meta["authorization_endpoint"], self.settings.web_oidc_client_id, "code",
            redirect_uri=self.redirect_url, scope=self.settings.web_oidc_scopes, state=login["state"],
            nonce=login["nonce"], code_challenge=create_s256_code_challenge(login["verifier"]),
            code_challenge_method="S256")
        return str(url), login

    async def finish(self, login: dict[str, Any], code: str, now: int) -> tuple[dict[str, Any], str]:
        """Exchange the code; the verified ID token's claims and the ID token itself."""
        meta = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_url,
                "client_id": self.settings.web_oidc_client_id}
        if login.get("verifier"):
            form["code_verifier"] = str(login["verifier"])
        secret = self.settings.web_oidc_client_secret
        # client_secret_basic (RFC 6749 section 2.3.1: both parts form-encoded); a public client sends none
        auth = httpx.BasicAuth(quote(self.settings.web_oidc_client_id, safe=""), quote(secret, safe="")) if secret else None
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                answer = await http.post(meta["token_endpoint"], data=form, auth=auth or httpx.USE_CLIENT_DEFAULT,
                                         headers={"Accept": "application/json"})
                if answer.status_code >= 400:  # RFC 6749 section 5.2: the provider says why
                    raise SignInFailed(f"the identity provider refused the code exchange ({answer.status_code}): "
                                       + _oauth_error(answer))
                answer.raise_for_status()
                token = answer.json()
                jwks = await http.get(meta["jwks_uri"])
                jwks.raise_for_status()
                keys = KeySet.import_key_set(jwks.json())
        except (httpx.HTTPError, JoseError, ValueError, KeyError) as exc:
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
                nonce={"essential": True, "value": str(login.get("nonce") or secrets.token_urlsafe(24))},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise SignInFailed(f"the ID token did not verify: {exc}") from None
        return dict(decoded.claims), id_token

    async def end_session(self, id_token: str) -> tuple[str, dict[str, str]] | None:
        """The provider's end_session_endpoint and the fields to post to it; None when it has none (or
        its discovery document cannot be read: SafeFlag's own session has ended all the same)."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except SignInFailed:
            return None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        return endpoint, {"id_token_hint": id_token, "post_logout_redirect_uri": self.post_logout_url,
                          "client_id": self.settings.web_oidc_client_id}
