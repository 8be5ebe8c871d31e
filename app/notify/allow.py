"""Where rest-hook notifications may go, and which headers a subscriber may add to them.

`SAFEFLAG_WEBHOOK_ALLOW` is a comma-separated list of `host` or `host:port` entries (IPv6 in brackets:
`[::1]:8443`). An entry with a port allows exactly that port; a host alone allows only its scheme's
default port (80 for http, 443 for https), so the default `127.0.0.1,localhost` lets no notification
reach a database or any other service listening on a loopback port. A malformed entry allows nothing.

`channel.header` may add headers, but not those SafeFlag sets itself (`Content-Type`, `Content-Length`,
`X-SafeFlag-*`, so the signature stays unforgeable) nor those that route or frame the request (`Host`
and the hop-by-hop headers of RFC 9110 section 7.6.1). End-to-end credentials for the subscriber's own
endpoint (`Authorization`) are the subscriber's to send.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
RESERVED_HEADERS = frozenset({
    "host", "content-type", "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade", "expect", "proxy-authorization", "proxy-authenticate",
})
RESERVED_PREFIX = "x-safeflag-"


def reserved_header(name: str) -> bool:
    """A header a subscription may not set (any case)."""
    low = name.strip().lower()
    return low in RESERVED_HEADERS or low.startswith(RESERVED_PREFIX)


def _entry(raw: str) -> tuple[str, int | None] | None:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address -> (host, port or None)."""
    raw = raw.strip().lower()
    if raw.startswith("["):
        host, close, rest = raw[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    else:
        host, port = raw, None
    if not host:
        return None
    if port is None:
        return host, None
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def target(endpoint: str) -> tuple[str, int, bool] | None:
    """(host, port, whether that is the scheme's default port) of an http(s) endpoint; None if it has none."""
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    default = DEFAULT_PORTS[parts.scheme]
    port = default if port is None else port
    return parts.hostname.lower(), port, port == default


def allowed(endpoint: str, allow: list[str]) -> bool:
    """Whether `SAFEFLAG_WEBHOOK_ALLOW`'s entries (`allow`) let a notification go to `endpoint`."""
    where = target(endpoint)
    if where is None:
        return False
    host, port, default = where
    for raw in allow:
        entry = _entry(raw)
        if entry is not None and entry[0] == host and (entry[1] == port or (entry[1] is None and default)):
            return True
    return False


def host_port(endpoint: str) -> str:
    """The endpoint's `host:port` as an allow-list entry names it (for messages, and an entry that allows it)."""
    where = target(endpoint)
    if where is None:
        return urlsplit(endpoint).hostname or ""
    host, port, _default = where
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def names_host(allow: list[str], host: str) -> bool:
    """Whether some entry names `host` (on any port)."""
    return any((e := _entry(raw)) is not None and e[0] == host for raw in allow)
