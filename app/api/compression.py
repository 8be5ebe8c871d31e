"""gzip for responses a client accepts compressed (`Accept-Encoding: gzip`, RFC 9110 section 12.5.3).

Starlette's `GZipMiddleware` wraps every response, also for clients that never ask for gzip; this
middleware hands only the requests that accept gzip to Starlette's own `GZipResponder`, and every
other request goes straight through. A body under `MINIMUM_SIZE` bytes (a read of one resource, most
OperationOutcomes) is sent as it is: compressing it costs more time than the bytes it saves. Level 6
(zlib's default) compresses FHIR JSON almost as well as level 9, several times faster. The web app's
pages (under /app) are compressed at level 1: their markup repeats itself so much that level 1 already
shrinks it some twentyfold, five times faster than level 6 (the lead's desk with 200 notices, 436 kB of
HTML: 19 kB in ~1 ms instead of 15.5 kB in ~5 ms, which was a tenth of the page's server time).

Request bodies compressed by a client are decoded where they are read (`app.api.deps.read_body`).
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipResponder
from starlette.types import ASGIApp, Receive, Scope, Send

MINIMUM_SIZE = 1024
LEVEL = 6
PAGE_LEVEL = 1
PAGES = "/app"  # the web app's pages (app/web)


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

    def __init__(self, app: ASGIApp, minimum_size: int = MINIMUM_SIZE, level: int = LEVEL,
                 page_level: int = PAGE_LEVEL) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level
        self.page_level = page_level

    def level_for(self, path: str) -> int:
        """The compression level of a response to `path`: `page_level` for the web app's pages."""
        return self.page_level if path == PAGES or path.startswith(PAGES + "/") else self.level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    if accepts_gzip(value):
                        await GZipResponder(self.app, self.minimum_size,
                                            compresslevel=self.level_for(scope["path"]))(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
