"""gzip for responses a client accepts compressed (`Accept-Encoding: gzip`, RFC 9110 section 12.5.3).

Starlette's `GZipMiddleware` wraps every response, also for clients that never ask for gzip; this
middleware hands only the requests that accept gzip to Starlette's own `GZipResponder`, and every
other request goes straight through. A body under `MINIMUM_SIZE` bytes (a read of one resource, most
OperationOutcomes) is sent as it is: compressing it costs more time than the bytes it saves. Level 6
(zlib's default) compresses FHIR JSON almost as well as level 9, several times faster.

Request bodies compressed by a client are decoded where they are read (`app.api.deps.read_body`).
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipResponder
from starlette.types import ASGIApp, Receive, Scope, Send

MINIMUM_SIZE = 1024
LEVEL = 6


def accepts_gzip(header: bytes) -> bool:
    """True when an `Accept-Encoding` value accepts gzip: `gzip`, `x-gzip` or `*`, with no `q=0`."""
    for item in header.decode("latin-1").lower().split(","):
        coding, _, params = item.partition(";")
        if coding.strip() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.replace(" ", "").partition("q=")[2]
        try:
            if not q or float(q) > 0:
                return True
        except ValueError:
            continue
    return False


class GzipResponses:
    """ASGI middleware (module docstring)."""

    def __init__(self, app: ASGIApp, minimum_size: int = MINIMUM_SIZE, level: int = LEVEL) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    if accepts_gzip(value):
                        await GZipResponder(self.app, self.minimum_size, compresslevel=self.level)(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
