"""`/metrics` for Prometheus without a token: a second, loopback-only listener (`SAFEFLAG_METRICS_BIND`,
e.g. `127.0.0.1:9464`) that answers `GET /metrics` and nothing else.

On the API port `/metrics` needs an admin or system token, and tokens live at most 24 hours, which a
scraper's static configuration cannot renew. A Prometheus (or agent) on the same host scrapes this
listener instead; it binds only to a loopback address, so nothing off the host reaches it (a bind to
any other address is refused at start). It runs in each server process, on the same event loop as the
API, with SO_REUSEPORT: with `--workers N` each scrape is answered by one worker with that worker's
figures, so run one worker per process where exact totals matter.

The HTTP it speaks is the least Prometheus needs: one request per connection (`Connection: close`),
the request head at most 8 KiB and 5 seconds; 404 for another path, 405 for another method.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("safeflag.metrics")
MAX_HEAD = 8 * 1024
HEAD_TIMEOUT_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Render = Callable[[], Awaitable[bytes]]


def parse_bind(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) with a loopback host; ValueError saying what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    message = f"SAFEFLAG_METRICS_BIND must be a loopback address and port such as 127.0.0.1:9464, not '{text}'"
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(message)
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError(message)
        except ValueError:
            raise ValueError(message) from None
    return host, int(port)


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
              extra: str = "", *, head_only: bool = False) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n")
    return head.encode() + (b"" if head_only else body)


async def _handle(render: Render, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if path != "/metrics":
            answer = _response("404 Not Found", b"only /metrics is served here\n")
        elif method not in ("GET", "HEAD"):
            answer = _response("405 Method Not Allowed", b"GET /metrics\n", extra="Allow: GET, HEAD\r\n")
        else:
            try:
                body = await render()
            except Exception:
                log.warning("metrics could not be read", exc_info=True)
                answer = _response("503 Service Unavailable", b"metrics could not be read\n")
            else:
                answer = _response("200 OK", body, CONTENT_TYPE, head_only=method == "HEAD")
        writer.write(answer)
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass  # a client that sent no request head in time, or too much, or went away: just close
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def start(bind: str, render: Render) -> asyncio.Server:
    host, port = parse_bind(bind)
    return await asyncio.start_server(lambda r, w: _handle(render, r, w), host, port, limit=MAX_HEAD,
                                      reuse_port=True)
