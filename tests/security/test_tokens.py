"""Token verification edge cases (RFC 8725): algorithms, times, issuer, audience, signature, claims,
and external issuers served by a real JWKS HTTP server."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.security.keys import SigningKey
from app.security.tokens import (
    MAX_SKEW,
    JwksCache,
    SecurityConfigError,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    parse_issuers,
)

ISS = "http://127.0.0.1:8080/auth"
AUD = "http://127.0.0.1:8080/fhir"
NOW = 1_800_000_000.0
LOCAL = SigningKey.from_private(ec.generate_private_key(ec.SECP256R1()))
BASE_CLAIMS = {"iss": ISS, "sub": "u1", "aud": AUD, "exp": NOW + 300, "role": "admin", "scope": "user/*.cruds"}


def verifier(**kw: Any) -> TokenVerifier:
    return TokenVerifier(ISS, LOCAL, AUD, now=lambda: NOW, **kw)


def sign(claims: dict[str, Any], key: Any = None, alg: str = "ES256", headers: dict[str, Any] | None = None) -> str:
    hdr = {"kid": LOCAL.kid, **(headers or {})}
    return jwt.encode(claims, key or LOCAL.private_key, algorithm=alg, headers=hdr)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def refused(token: str, message: str, v: TokenVerifier | None = None) -> None:
    with pytest.raises(TokenError) as err:
        await (v or verifier()).verify(token)
    assert str(err.value) == message


async def test_valid_local_token() -> None:
    claims = await verifier().verify(sign(BASE_CLAIMS))
    assert claims["sub"] == "u1" and claims["role"] == "admin"


async def test_minted_token_verifies() -> None:
    issuer = TokenIssuer(ISS, AUD, LOCAL, now=lambda: NOW)
    token = issuer.mint(sub="hv", role="health-visitor", scope="user/Flag.rs", org="Organization/o", ttl=60)
    claims = await verifier().verify(token)
    assert {k: claims[k] for k in ("iss", "sub", "aud", "role", "scope", "org")} == {
        "iss": ISS, "sub": "hv", "aud": AUD, "role": "health-visitor", "scope": "user/Flag.rs", "org": "Organization/o"}
    assert claims["exp"] - claims["iat"] == 60 and claims["nbf"] == claims["iat"]
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": LOCAL.kid, "typ": "at+jwt"}


async def test_verified_token_cache_checks_times_on_every_hit() -> None:
    clock = [NOW]
    v = TokenVerifier(ISS, LOCAL, AUD, now=lambda: clock[0])
    token = sign({**BASE_CLAIMS, "nbf": NOW})
    first = await v.verify(token)
    assert await v.verify(token) is first  # the second use is not verified again
    clock[0] = NOW + 300 + MAX_SKEW + 1
    await refused(token, "the token has expired", v)
    clock[0] = NOW - MAX_SKEW - 1
    await refused(token, "the token is not valid yet (nbf)", v)
    # a token that failed is never cached: a forged signature fails every time
    forged = token[: token.rindex(".") + 1] + b64(b"x" * 64)
    clock[0] = NOW
    for _ in range(2):
        await refused(forged, "the token's signature does not verify", v)


@pytest.mark.parametrize("exp_offset, ok", [(-MAX_SKEW + 1, True), (-MAX_SKEW - 1, False)])
async def test_expiry_with_60s_skew(exp_offset: int, ok: bool) -> None:
    token = sign({**BASE_CLAIMS, "exp": NOW + exp_offset})
    if ok:
        await verifier().verify(token)
    else:
        await refused(token, "the token has expired")


@pytest.mark.parametrize("nbf_offset, ok", [(MAX_SKEW - 1, True), (MAX_SKEW + 1, False)])
async def test_not_before_with_60s_skew(nbf_offset: int, ok: bool) -> None:
    token = sign({**BASE_CLAIMS, "nbf": NOW + nbf_offset})
    if ok:
        await verifier().verify(token)
    else:
        await refused(token, "the token is not valid yet (nbf)")


async def test_wrong_issuer() -> None:
    await refused(sign({**BASE_CLAIMS, "iss": "https://evil.example/auth"}), "the token's issuer is not trusted here")


async def test_wrong_audience() -> None:
    await refused(sign({**BASE_CLAIMS, "aud": "https://other-api.example"}),
                  "the token is not meant for this server (aud)")


@pytest.mark.parametrize("claim", ["sub", "exp", "aud", "role", "scope"])
async def test_missing_claims(claim: str) -> None:
    await refused(sign({k: v for k, v in BASE_CLAIMS.items() if k != claim}), f"the token has no '{claim}' claim")


async def test_missing_issuer() -> None:
    await refused(sign({k: v for k, v in BASE_CLAIMS.items() if k != "iss"}), "the token has no issuer (iss)")


async def test_tampered_payload() -> None:
    head, _payload, sig = sign(BASE_CLAIMS).split(".")
    forged = b64(json.dumps({**BASE_CLAIMS, "role": "admin", "sub": "someone-else"}).encode())
    await refused(f"{head}.{forged}.{sig}", "the token's signature does not verify")


async def test_alg_none() -> None:
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps(BASE_CLAIMS).encode())
    await refused(f"{head}.{body}.", "signing algorithm 'none' is not accepted (use RS256, RS384, ES256 or ES384)")


async def test_hmac_with_the_public_key_is_refused() -> None:
    """The classic confusion: HS256 keyed with the issuer's public key (which anyone can fetch)."""
    public_pem = LOCAL.public_key.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    head = b64(json.dumps({"alg": "HS256", "kid": LOCAL.kid}).encode())
    body = b64(json.dumps(BASE_CLAIMS).encode())
    import hashlib
    import hmac

    sig = b64(hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    await refused(f"{head}.{body}.{sig}", "signing algorithm 'HS256' is not accepted (use RS256, RS384, ES256 or ES384)")


async def test_algorithm_must_fit_the_key() -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    await refused(sign(BASE_CLAIMS, other, "ES384"), "algorithm ES384 does not match the issuer's key")


async def test_unknown_kid_for_the_local_issuer() -> None:
    await refused(sign(BASE_CLAIMS, headers={"kid": "someone-elses-key"}),
                  "the token's key id (kid) is not one of the issuer's keys")


async def test_right_kid_wrong_key() -> None:
    impostor = ec.generate_private_key(ec.SECP256R1())
    await refused(sign(BASE_CLAIMS, impostor), "the token's signature does not verify")


async def test_critical_headers_are_refused() -> None:
    # RFC 7515 4.1.11: a recipient that does not understand a critical extension must reject the JWS
    await refused(sign(BASE_CLAIMS, headers={"crit": ["exp"]}), "the token is not a well-formed JWT")


async def test_not_a_jwt() -> None:
    await refused("abc", "the token is not a compact JWS")
    await refused("a.b.c", "the token is not a well-formed JWT")
    await refused("x" * 20000 + ".a.b", "the token is not a compact JWS")


async def test_non_numeric_exp() -> None:
    await refused(sign({**BASE_CLAIMS, "exp": "tomorrow"}), "the token's 'exp' claim is not a number")


def test_issuer_configuration() -> None:
    assert parse_issuers("[]") == []
    cfg = parse_issuers('[{"issuer": "https://idp.example", "jwks_url": "https://idp.example/jwks", "audience": "api"}]')
    assert (cfg[0].issuer, cfg[0].jwks_url, cfg[0].audience) == ("https://idp.example", "https://idp.example/jwks", "api")
    for bad, msg in [
        ("{", "SAFEFLAG_AUTH_ISSUERS is not valid JSON"),
        ('{"issuer": "x"}', "SAFEFLAG_AUTH_ISSUERS must be a JSON list of {issuer, jwks_url}"),
        ('[{"issuer": "x"}]', "SAFEFLAG_AUTH_ISSUERS[0] needs string 'issuer' and 'jwks_url'"),
        ('[{"issuer": "x", "jwks_url": "http://idp.example/jwks"}]',
         "SAFEFLAG_AUTH_ISSUERS[0].jwks_url must be https (or local)"),
    ]:
        with pytest.raises(SecurityConfigError) as err:
            parse_issuers(bad)
        assert str(err.value).startswith(msg)


# -- external issuers over real HTTP ------------------------------------------------------------

class JwksServer:
    """A real HTTP server on 127.0.0.1 serving a JWKS that the test can rotate; counts fetches."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                body = json.dumps(server.jwks).encode()
                self.send_response(200 if self.path == "/jwks" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *keys: SigningKey) -> None:
        self.jwks = {"keys": [k.jwk() for k in keys]}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


EXT = "https://idp.example.nhs.uk"


async def test_external_issuer_with_rotation_and_rate_limited_refresh(jwks_server: JwksServer) -> None:
    key1 = SigningKey.from_private(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    key2 = SigningKey.from_private(ec.generate_private_key(ec.SECP384R1()))
    jwks_server.publish(key1)
    clock = {"t": 1000.0}
    async with httpx.AsyncClient(timeout=5) as http:
        cache = JwksCache(http, min_refresh=30, now=lambda: clock["t"])
        cfg = parse_issuers(json.dumps([{"issuer": EXT, "jwks_url": jwks_server.url}]))
        v = verifier(external=cfg, jwks=cache)
        claims = {**BASE_CLAIMS, "iss": EXT}

        def ext_token(key: SigningKey, alg: str) -> str:
            return jwt.encode(claims, key.private_key, algorithm=alg, headers={"kid": key.kid})

        assert (await v.verify(ext_token(key1, "RS256")))["iss"] == EXT
        assert (await v.verify(ext_token(key1, "RS256")))["iss"] == EXT
        assert jwks_server.hits == 1  # cached
        # the issuer rotates to key2: the first token with the new kid triggers one refetch
        jwks_server.publish(key1, key2)
        clock["t"] += 31
        assert (await v.verify(ext_token(key2, "ES384")))["sub"] == "u1"
        assert jwks_server.hits == 2
        # an unknown kid right after a fetch does not hammer the issuer
        stranger = SigningKey.from_private(ec.generate_private_key(ec.SECP256R1()))
        await refused(ext_token(stranger, "ES256"), "the token's key id (kid) is not one of the issuer's keys", v)
        assert jwks_server.hits == 2
        clock["t"] += 31
        await refused(ext_token(stranger, "ES256"), "the token's key id (kid) is not one of the issuer's keys", v)
        assert jwks_server.hits == 3
        # RS256 key, ES384 header: refused before any signature check
        bad = jwt.encode(claims, key2.private_key, algorithm="ES384", headers={"kid": key1.kid})
        await refused(bad, "algorithm ES384 does not match the issuer's key", v)


async def test_external_issuer_audience_override(jwks_server: JwksServer) -> None:
    key = SigningKey.from_private(ec.generate_private_key(ec.SECP256R1()))
    jwks_server.publish(key)
    async with httpx.AsyncClient(timeout=5) as http:
        cfg = parse_issuers(json.dumps([{"issuer": EXT, "jwks_url": jwks_server.url, "audience": "safeflag-api"}]))
        v = verifier(external=cfg, jwks=JwksCache(http))
        good = jwt.encode({**BASE_CLAIMS, "iss": EXT, "aud": "safeflag-api"}, key.private_key, "ES256",
                          headers={"kid": key.kid})
        assert (await v.verify(good))["aud"] == "safeflag-api"
        wrong = jwt.encode({**BASE_CLAIMS, "iss": EXT}, key.private_key, "ES256", headers={"kid": key.kid})
        await refused(wrong, "the token is not meant for this server (aud)", v)


async def test_unreachable_jwks() -> None:
    async with httpx.AsyncClient(timeout=1) as http:
        cfg = parse_issuers(json.dumps([{"issuer": EXT, "jwks_url": "http://127.0.0.1:9/jwks"}]))
        v = verifier(external=cfg, jwks=JwksCache(http))
        key = SigningKey.from_private(ec.generate_private_key(ec.SECP256R1()))
        token = jwt.encode({**BASE_CLAIMS, "iss": EXT}, key.private_key, "ES256", headers={"kid": key.kid})
        await refused(token, "the issuer's signing keys could not be fetched", v)


def test_wall_clock_default() -> None:
    assert abs(TokenVerifier(ISS, LOCAL, AUD).now() - time.time()) < 5
