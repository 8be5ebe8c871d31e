"""Hardening as pure-ASGI middleware (no BaseHTTPMiddleware: it costs on every request).

- `SecurityHeadersMiddleware`: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
  `Referrer-Policy: no-referrer`, `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`
  on every response, `Cache-Control: no-store` unless a route set its own (FHIR data must not sit in
  shared caches); CORS closed unless `SAFEFLAG_CORS_ORIGINS` lists an origin (a preflight from any
  other origin is refused with 403, and no CORS header is ever sent to it).
- `RateLimitMiddleware`: a token bucket per client (429 + `Retry-After` + OperationOutcome
  `throttled`). The client is the bearer token's `iss` + `client_id`/`sub` only once the token has
  verified (signature, issuer, times: the verifier's cache makes this a dictionary look-up for a
  token seen before); any other request, a forged or expired token included, counts against its
  peer IP address. Keying by claims read without verification let anyone drain another client's
  bucket with unsigned tokens naming it. Probes (`/healthz`, `/readyz`, `/metrics`) are not
  limited. Buckets live in the process: with N workers a client gets N times the rate, which is
  acceptable for abuse protection.
- `CancelOnDisconnectMiddleware`: a read (GET, HEAD, `POST .../_search`) whose client goes away before
  the answer is sent is cancelled, and with it its database statement (asyncpg sends PostgreSQL a
  cancel request when the awaiting task is cancelled): a client that gave up must not keep a pooled
  connection and a backend busy. Writes are never cancelled half-way: they finish and commit or roll
  back as if the client were still there. The request is marked `CLIENT_GONE` in its scope (logged and
  counted as 499, not as an error).
- `UrlLengthMiddleware`: a request whose path and query together exceed `SAFEFLAG_MAX_URL_BYTES`
  (default 8 KiB) is answered 414 with an OperationOutcome (`too-long`), before routing, parsing or
  authentication. The HTTP server has its own, higher limit: uvicorn's httptools parser (what
  `safeflag serve` runs) refuses a URL over 65,535 bytes with a plain-text 400 before any application
  code runs. This limit must stay below that one, so that a client sees the FHIR answer for every
  URL up to the parser's limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import Issue, operation_outcome

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, Prefer, " \
                     "X-Request-Id, X-Access-Context"
CORS_EXPOSE_HEADERS = ("ETag, Location, Content-Location, Last-Modified, X-Request-Id, WWW-Authenticate, Retry-After, "
                       "X-SafeFlag-Unrouted")
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
FHIR_JSON = b"application/fhir+json; charset=utf-8"
EXEMPT = ("/healthz", "/readyz", "/metrics")
CLIENT_GONE = "safeflag.client_gone"  # scope key: the client disconnected before its answer was sent
MAX_SEARCH_FORM = 1024 * 1024  # a POST _search body read ahead, so that the disconnect can be watched


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _send_outcome(send: Send, status: int, issue: Issue, extra: list[tuple[bytes, bytes]]) -> None:
    body = orjson.dumps(operation_outcome([issue]))
    headers = [(b"content-type", FHIR_JSON), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, cors_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(o.strip().rstrip("/") for o in cors_origins if o.strip())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        allowed = origin is not None and origin in self.origins
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")] \
            if origin is not None and allowed else []
        if scope["method"] == "OPTIONS" and origin and _header(scope, b"access-control-request-method"):
            if not allowed:
                await _send_outcome(send, 403, Issue("forbidden", f"Cross-origin requests from {origin[:100]} "
                                                     "are not allowed", msg_id="SF-0831"), list(SECURITY_HEADERS))
                return
            preflight = [*cors, (b"access-control-allow-methods", CORS_METHODS.encode()),
                         (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode()),
                         (b"access-control-max-age", b"600"), *SECURITY_HEADERS]
            await send({"type": "http.response.start", "status": 204, "headers": preflight})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                if cors:
                    headers.extend(cors)
                    headers.append((b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


class TokenBuckets:
    """`rate` tokens per second up to `burst`, per key; least recently used keys are forgotten."""

    def __init__(self, rate: float, burst: int, *, now: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.now, self.max_keys = rate, burst, now, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 when a token was taken, else the seconds until one will be available."""
        now = self.now()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1 - 1e-9:  # float clocks: a full token's worth of time may add up to 0.99999...
            tokens = max(0.0, tokens - 1)
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


Identify = Callable[[str], Awaitable[str | None]]  # an Authorization header -> verified identity, or None


async def client_key(scope: Scope, identify: Identify | None) -> str:
    """Who is asking, for rate limiting: the verified identity of the bearer token, else the peer address."""
    auth = _header(scope, b"authorization")
    if auth and identify is not None:
        who = await identify(auth)
        if who is not None:
            return f"token:{who}"
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, rate: float, burst: int, identify: Identify | None = None,
                 now: Callable[[], float] = time.monotonic, exempt: tuple[str, ...] = EXEMPT) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst, now=now) if rate > 0 else None
        self.identify = identify
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.buckets is None or scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(await client_key(scope, self.identify))
        if wait > 0:
            retry = max(1, math.ceil(wait))
            issue = Issue("throttled", f"Too many requests from this client; retry after {retry} s",
                          msg_id="SF-0830")
            await _send_outcome(send, 429, issue, [(b"retry-after", str(retry).encode())])
            return
        await self.app(scope, receive, send)


def _cancellable(scope: Scope) -> bool:
    """Reads only; a `POST _search` only with a declared, modest body (read ahead in full)."""
    if scope["method"] in ("GET", "HEAD"):
        return True
    length = _header(scope, b"content-length")
    return (scope["method"] == "POST" and scope["path"].endswith("/_search") and length is not None
            and length.isdigit() and int(length) <= MAX_SEARCH_FORM)


class CancelOnDisconnectMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _cancellable(scope):
            await self.app(scope, receive, send)
            return
        body: list[Message] = []  # the whole request body, read ahead (none for GET)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope[CLIENT_GONE] = True
                return
            body.append(message)
            if not message.get("more_body"):
                break
        gone = asyncio.Event()
        current = asyncio.current_task()
        state = {"answered": False, "cancelled": False}

        async def replay() -> Message:
            if body:
                return body.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        async def track(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                state["answered"] = True
            await send(message)

        async def watch() -> None:  # the server answers http.disconnect when the client leaves
            if (await receive())["type"] == "http.disconnect" and not state["answered"] and current is not None:
                state["cancelled"] = True
                gone.set()
                current.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await self.app(scope, replay, track)
        except asyncio.CancelledError:
            if not state["cancelled"] or current is None:
                raise
            current.uncancel()  # ours: the request ends here, quietly
            scope[CLIENT_GONE] = True
        finally:
            watcher.cancel()


class UrlLengthMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("raw_path") or scope["path"].encode("utf-8")
            length = len(path) + (len(scope["query_string"]) + 1 if scope.get("query_string") else 0)
            if length > self.max_bytes:
                issue = Issue("too-long", f"The request URL is {length} bytes long; this server takes at most "
                              f"{self.max_bytes} (send long searches as POST {scope['path'][:60]}/_search)",
                              msg_id="SF-0018")
                await _send_outcome(send, 414, issue, [])
                return
        await self.app(scope, receive, send)
