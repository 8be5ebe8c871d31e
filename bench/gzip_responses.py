"""What response compression (app/api/compression.py) costs per request, at the ASGI level.

An inner app answers a fixed FHIR JSON body (no database, no routing), called through `GzipResponses`
and without it; microseconds per request (best of 7 rounds, CPU time) for:

- none: the inner app alone (the floor);
- no Accept-Encoding: the middleware scans the headers and passes the request through;
- gzip accepted, a 600-byte read: under `MINIMUM_SIZE`, sent uncompressed through Starlette's responder;
- gzip accepted, a 20 KB search page: compressed at level 6 (and its compressed size).

    .venv/bin/python -m bench.gzip_responses
"""

from __future__ import annotations

import asyncio
import gzip
import time
from typing import Any

import orjson

from app.api.compression import GzipResponses
from tests.support.fhir_data import patient

ROUNDS, CALLS = 7, 5_000
READ = orjson.dumps({**patient(), "id": "0f8c1a52-3b7e-4e59-9d1c-5a8f0e2f6a11",
                     "meta": {"versionId": "1", "lastUpdated": "2026-01-05T09:00:01.000+00:00"},
                     "gender": "female", "address": [{"postalCode": "LS1 4AP", "city": "Leeds"}],
                     "telecom": [{"system": "phone", "value": "01632 960000"}]})
PAGE = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [
    {"fullUrl": f"http://127.0.0.1:8080/fhir/Patient/{i}", "resource": orjson.loads(READ)} for i in range(40)]})


def inner(body: bytes) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/fhir+json; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return app


async def per_call(app: Any, accept_encoding: bytes | None) -> tuple[float, int]:
    headers = [(b"host", b"127.0.0.1"), (b"accept", b"application/fhir+json")]
    if accept_encoding:
        headers.append((b"accept-encoding", accept_encoding))
    scope = {"type": "http", "method": "GET", "path": "/fhir/Patient/x", "headers": headers}
    size = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal size
        if message["type"] == "http.response.body":
            size = len(message["body"])

    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(CALLS):
            await app(scope, receive, send)
        best = min(best, (time.process_time() - started) / CALLS)
    return best * 1e6, size


async def main() -> None:
    print(f"read {len(READ)} bytes, page {len(PAGE)} bytes (gzip -6 alone: {len(gzip.compress(PAGE, 6))} bytes)")
    for label, app, ae in (
        ("read, none", inner(READ), None),
        ("read, no Accept-Encoding", GzipResponses(inner(READ)), None),
        ("read, gzip accepted", GzipResponses(inner(READ)), b"gzip, deflate"),
        ("page, none", inner(PAGE), None),
        ("page, no Accept-Encoding", GzipResponses(inner(PAGE)), None),
        ("page, gzip accepted", GzipResponses(inner(PAGE)), b"gzip, deflate"),
    ):
        us, size = await per_call(app, ae)
        print(f"{label:28s} {us:8.1f} us/request  body sent {size} bytes")


if __name__ == "__main__":
    asyncio.run(main())
