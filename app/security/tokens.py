"""Bearer JWT issue and verification (RFC 7519, RFC 8725 "JWT Best Current Practices").

- Algorithms RS256, RS384, ES256, ES384 only. `alg: none`, every HS* (including the classic
  HMAC-with-the-public-key confusion) and any algorithm that does not fit the key type are refused
  before a signature is checked.
- Keys come only from configuration, never from the token (`jku`, `x5u`, `jwk` headers are ignored).
- `iss` must be the local issuer (`<base>/auth`) or one of `SAFEFLAG_AUTH_ISSUERS`
  (JSON list of `{"issuer", "jwks_url"[, "audience"]}`); external keys are fetched from the JWKS URL,
  cached, and refetched when an unknown `kid` appears (at most once per `min_refresh` seconds).
- `aud` must contain the FHIR base URL (`<base>/fhir`), or the issuer entry's `audience`: a token
  minted for another API is not accepted here.
- `exp` (required) and `nbf` are checked with at most 60 s clock skew.
- Lifetime at most 24 hours (`MAX_LIFETIME`), from every issuer: a token whose `exp` is more than
  24 h (plus the skew) ahead, or more than 24 h after its own `iat`, is refused. A token good for
  centuries is a stolen credential that never stops working; `safeflag token --ttl` mints no longer.
- Required claims: `iss`, `sub`, `exp`, `aud`, `role`, `scope`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from app.security.keys import PublicKey, SigningKey

ALLOWED_ALGS = ("RS256", "RS384", "ES256", "ES384")
MAX_SKEW = 60
MAX_LIFETIME = 24 * 3600  # seconds; README "Security"
MAX_TOKEN_BYTES = 16 * 1024
_KEY_FOR_ALG = {"RS256": ("RSA", None), "RS384": ("RSA", None), "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384")}


class TokenError(Exception):
    """Why a token was refused; the text goes into `error_description` (no token content in it)."""


class SecurityConfigError(RuntimeError):
    """Security configuration that must stop the server from starting."""


@dataclass(frozen=True)
class IssuerConfig:
    issuer: str
    jwks_url: str
    audience: str | None = None


def parse_issuers(raw: str) -> list[IssuerConfig]:
    try:
        items = json.loads(raw or "[]")
    except json.JSONDecodeError as exc:
        raise SecurityConfigError(f"SAFEFLAG_AUTH_ISSUERS is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise SecurityConfigError("SAFEFLAG_AUTH_ISSUERS must be a JSON list of {issuer, jwks_url}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("issuer"), str) or not isinstance(
            item.get("jwks_url"), str
        ):
            raise SecurityConfigError(f"SAFEFLAG_AUTH_ISSUERS[{i}] needs string 'issuer' and 'jwks_url'")
        if not item["jwks_url"].startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise SecurityConfigError(f"SAFEFLAG_AUTH_ISSUERS[{i}].jwks_url must be https (or local)")
        aud = item.get("audience")
        out.append(IssuerConfig(item["issuer"], item["jwks_url"], aud if isinstance(aud, str) else None))
    return out


def key_fits(alg: str, jwk: dict[str, Any]) -> bool:
    kty, crv = _KEY_FOR_ALG[alg]
    return jwk.get("kty") == kty and (crv is None or jwk.get("crv") == crv)


@dataclass
class _Jwks:
    keys: dict[str, dict[str, Any]]  # kid -> JWK ("" for a key without kid)
    fetched: float


@dataclass
class JwksCache:
    """Keys of external issuers by JWKS URL, refreshed on an unknown kid (rate limited)."""

    http: httpx.AsyncClient
    ttl: float = 3600.0
    min_refresh: float = 30.0
    now: Callable[[], float] = time.monotonic
    _cache: dict[str, _Jwks] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def _fetch(self, url: str) -> _Jwks:
        try:
            resp = await self.http.get(url, headers={"Accept": "application/json"})
            resp.raise_for_status()
            doc = resp.json()
        except (httpx.HTTPError, ValueError):
            raise TokenError("the issuer's signing keys could not be fetched") from None
        keys: dict[str, dict[str, Any]] = {}
        for jwk in doc.get("keys", []) if isinstance(doc, dict) else []:
            if isinstance(jwk, dict) and jwk.get("kty") in ("RSA", "EC") and jwk.get("use", "sig") == "sig":
                keys[str(jwk.get("kid", ""))] = jwk
        return _Jwks(keys, self.now())

    async def key(self, url: str, kid: str) -> dict[str, Any]:
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            entry = self._cache.get(url)
            stale = entry is None or self.now() - entry.fetched > self.ttl
            unknown = entry is not None and kid not in entry.keys
            if stale or (unknown and self.now() - entry.fetched >= self.min_refresh):  # type: ignore[union-attr]
                entry = await self._fetch(url)
                self._cache[url] = entry
        assert entry is not None
        jwk = entry.keys.get(kid)
        if jwk is None and not kid and len(entry.keys) == 1:
            jwk = next(iter(entry.keys.values()))  # a token without kid from an issuer with one key
        if jwk is None:
            raise TokenError("the token's key id (kid) is not one of the issuer's keys")
        return jwk


def decode_signed(
    token: str, jwk: dict[str, Any], alg: str, *, audience: str, issuer: str, require: list[str],
    messages: dict[str, str],
) -> dict[str, Any]:
    """Verify signature, `aud` and `iss` of a JWS with one known key and return its claims; time
    claims are left to the caller (with its own skew). Failures raise TokenError with the caller's
    wording: messages for "signature", "missing" (formatted with {claim}), "audience", "issuer", "other"."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, _public_key(jwk, alg), algorithms=[alg], audience=audience, issuer=issuer,
            options={"require": require, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenError(messages["signature"]) from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(messages["missing"].format(claim=exc.claim)) from None
    except jwt.InvalidAudienceError:
        raise TokenError(messages["audience"]) from None
    except jwt.InvalidIssuerError:
        raise TokenError(messages["issuer"]) from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenError(messages["other"]) from None
    return claims


VERIFIED_CACHE_SIZE = 4096

_ACCESS_TOKEN_MESSAGES = {
    "signature": "the token's signature does not verify",
    "missing": "the token has no '{claim}' claim",
    "audience": "the token is not meant for this server (aud)",
    "issuer": "the token's issuer is not trusted here",
    "other": "the token could not be verified",
}


def _public_key(jwk: dict[str, Any], alg: str) -> PublicKey:
    try:
        key = PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        raise TokenError("the issuer's key cannot be used") from None
    return key  # type: ignore[no-any-return]


@dataclass
class TokenVerifier:
    local_issuer: str
    local_key: SigningKey
    audience: str
    external: list[IssuerConfig] = field(default_factory=list)
    jwks: JwksCache | None = None
    now: Callable[[], float] = time.time
    # Verified tokens until they expire: a client sends the same token with every request, and checking
    # its signature again costs more CPU than the rest of a read. Only tokens that verified go in; the
    # times are checked again on every hit, so an expired token is refused exactly as before. (A JWKS key
    # withdrawn by an external issuer stops new tokens at once; tokens already seen run to their `exp`,
    # as with any cache of JWKS verification.)
    _verified: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    async def verify(self, token: str) -> dict[str, Any]:
        """The verified claims, or TokenError saying why not."""
        hit = self._verified.get(token)
        if hit is not None:
            self._check_times(hit)
            return hit
        claims = await self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # bounded: a burst of new tokens starts the cache afresh
        self._verified[token] = claims
        return claims

    async def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            raise TokenError("the token is not a compact JWS")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenError("the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise TokenError(f"signing algorithm {str(alg)[:20]!r} is not accepted (use RS256, RS384, ES256 or ES384)")
        iss = unverified.get("iss")
        if not isinstance(iss, str):
            raise TokenError("the token has no issuer (iss)")
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else ""
        audience = self.audience
        if iss == self.local_issuer:
            if kid and kid != self.local_key.kid:
                raise TokenError("the token's key id (kid) is not one of the issuer's keys")
            jwk = self.local_key.jwk()
        else:
            cfg = next((c for c in self.external if c.issuer == iss), None)
            if cfg is None or self.jwks is None:
                raise TokenError("the token's issuer is not trusted here")
            jwk = await self.jwks.key(cfg.jwks_url, kid)
            audience = cfg.audience or self.audience
        if not key_fits(alg, jwk) or jwk.get("alg", alg) != alg:
            raise TokenError(f"algorithm {alg} does not match the issuer's key")
        claims = decode_signed(token, jwk, alg, audience=audience, issuer=iss,
                               require=["iss", "sub", "exp", "aud"], messages=_ACCESS_TOKEN_MESSAGES)
        self._check_times(claims)
        for name in ("sub", "role", "scope"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise TokenError(f"the token has no '{name}' claim")
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self.now()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise TokenError("the token's 'exp' claim is not a number")
        if now > exp + MAX_SKEW:
            raise TokenError("the token has expired")
        iat = claims.get("iat")
        issued = iat if isinstance(iat, (int, float)) and not isinstance(iat, bool) else now
        if exp - min(issued, now + MAX_SKEW) > MAX_LIFETIME + MAX_SKEW:
            raise TokenError("the token's lifetime (exp) is longer than the 24 hours accepted here")
        if nbf is not None:
            if not isinstance(nbf, (int, float)) or isinstance(nbf, bool):
                raise TokenError("the token's 'nbf' claim is not a number")
            if now + MAX_SKEW < nbf:
                raise TokenError("the token is not valid yet (nbf)")


@dataclass
class TokenIssuer:
    """Mints access tokens signed by the local issuer key (`safeflag token`, SMART backend services)."""

    issuer: str
    audience: str
    key: SigningKey
    now: Callable[[], float] = time.time

    def mint(
        self,
        *,
        sub: str,
        role: str,
        scope: str,
        ttl: int = 3600,
        org: str | None = None,
        fhir_user: str | None = None,
        care_setting: str | None = None,
        client_id: str | None = None,
    ) -> str:
        if not 0 < ttl <= MAX_LIFETIME:
            raise ValueError(f"a token's lifetime is 1 to {MAX_LIFETIME} seconds, not {ttl}")
        now = int(self.now())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": str(uuid.uuid4()),
            "role": role,
            "scope": scope,
        }
        optional = {"org": org, "fhirUser": fhir_user, "care_setting": care_setting, "client_id": client_id}
        claims.update({k: v for k, v in optional.items() if v})
        headers = {"kid": self.key.kid, "typ": "at+jwt"}
        return jwt.encode(claims, self.key.private_key, algorithm=self.key.alg, headers=headers)


def default_scope(role: str) -> str:
    """What `safeflag token` grants when no --scope is given: everything the role allows."""
    return "system/*.cruds" if role == "system" else "user/*.cruds"
