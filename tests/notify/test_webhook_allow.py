"""Where rest-hook notifications may go (SAFEFLAG_WEBHOOK_ALLOW entries `host` or `host:port`) and which
headers a subscription may not set; a real receiver and dispatcher, both databases."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import pytest

from app.context import AppContext
from app.notify.allow import allowed
from app.notify.dispatcher import Dispatcher
from tests.notify.conftest import SECRET, subscription
from tests.support.receiver import Receiver

RULE = "(entries are host:port, or a host for its scheme's default port)"


def refused(where: str) -> list[dict[str, Any]]:
    return [{"severity": "error", "code": "invalid", "expression": ["Subscription.channel.endpoint"],
             "diagnostics": f"SF-0707: Endpoint '{where}' is not in SAFEFLAG_WEBHOOK_ALLOW {RULE}"}]


async def test_the_default_allows_only_loopbacks_default_ports(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    """`127.0.0.1,localhost` (plus this test's receiver) no longer lets a notification reach PostgreSQL,
    Redis or anything else on a loopback port."""
    assert notify_ctx.settings.webhook_allow.startswith("127.0.0.1,localhost,127.0.0.1:")
    for endpoint, where in (("http://127.0.0.1:5432/", "127.0.0.1:5432"), ("http://localhost:6379/x", "localhost:6379"),
                            ("http://127.0.0.1:443/", "127.0.0.1:443"), ("https://127.0.0.1:80/", "127.0.0.1:80"),
                            ("http://[::1]/", "[::1]:80")):
        r = await api.post("/fhir/Subscription", json=subscription(endpoint))
        assert (r.status_code, r.json()["issue"]) == (422, refused(where)), endpoint
    for endpoint in ("http://127.0.0.1/hook", "https://localhost/hook", "http://127.0.0.1:80/hook"):
        r = await api.post("/fhir/Subscription", json=subscription(endpoint))
        assert r.status_code == 201, (endpoint, r.text)


async def test_host_port_and_ipv6_entries(api: httpx.AsyncClient, notify_ctx: AppContext) -> None:
    notify_ctx.settings.webhook_allow = "[::1]:8443,hooks.example.org:8080,[::2],bad:port:entry,:99,[::3]x"
    for endpoint in ("http://[::1]:8443/h", "https://hooks.example.org:8080/", "https://[::2]/"):
        r = await api.post("/fhir/Subscription", json=subscription(endpoint))
        assert r.status_code == 201, (endpoint, r.text)
    for endpoint, where in (("http://[::1]:8444/h", "[::1]:8444"), ("http://hooks.example.org/", "hooks.example.org:80"),
                            ("http://[::2]:8080/", "[::2]:8080"), ("http://[::3]/", "[::3]:80")):
        r = await api.post("/fhir/Subscription", json=subscription(endpoint))
        assert (r.status_code, r.json()["issue"]) == (422, refused(where)), endpoint


@pytest.mark.parametrize("entry, endpoint, ok", [
    ("127.0.0.1", "http://127.0.0.1:5432/", False),
    ("127.0.0.1:5432", "http://127.0.0.1:5432/", True),
    ("127.0.0.1:5432", "http://127.0.0.1/", False),
    ("LocalHost", "HTTPS://LOCALHOST/", True),
    ("::1", "http://[::1]/", True),
    ("[::1]:0", "http://[::1]/", False),
    ("127.0.0.1:99999", "http://127.0.0.1:99999/", False),
    ("127.0.0.1", "ftp://127.0.0.1/", False),
    ("127.0.0.1", "http://127.0.0.1:notaport/", False),
])
def test_entries(entry: str, endpoint: str, ok: bool) -> None:
    assert allowed(endpoint, [entry]) is ok


async def test_delivery_checks_the_allow_list_again(api: httpx.AsyncClient, notify_ctx: AppContext,
                                                    dispatcher: Dispatcher, receiver: Receiver) -> None:
    r = await api.post("/fhir/Subscription", json=subscription(receiver.url))
    assert r.status_code == 201, r.text
    notify_ctx.settings.webhook_allow = "127.0.0.1,localhost"  # the receiver's port is no longer listed
    await dispatcher.run_once()
    sub = (await api.get(f"/fhir/Subscription/{r.json()['id']}")).json()
    assert (sub["status"], sub["error"]) == ("error", "subscription is no longer valid on this server")
    assert receiver.received == []


async def test_headers_safeflag_sets_or_that_route_the_request_are_refused(api: httpx.AsyncClient) -> None:
    headers = ("X-Team: north", "Host: internal.example", "x-safeflag-signature: sha256=forged",
               "Transfer-Encoding: chunked", "Content-Type: text/plain", "Proxy-Authorization: Basic eA==",
               "X-SafeFlag-Anything: 1", "Connection: close")
    r = await api.post("/fhir/Subscription", json=subscription("http://127.0.0.1/hook", headers=headers))
    assert r.status_code == 422
    assert r.json()["issue"] == [
        {"severity": "error", "code": "invalid", "expression": [f"Subscription.channel.header[{i}]"],
         "diagnostics": f"SF-0712: A channel header may not set '{name}': SafeFlag sets it, or it routes or "
                        "frames the request"}
        for i, name in enumerate(h.split(":")[0] for h in headers) if i > 0
    ]
    assert (await api.get("/fhir/Subscription?_summary=count")).json()["total"] == 0


async def test_the_subscribers_own_credentials_go_with_the_real_signature(
    api: httpx.AsyncClient, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    r = await api.post("/fhir/Subscription", json=subscription(
        receiver.url, headers=("Authorization: Bearer subscriber-token", "X-Team: north")))
    assert r.status_code == 201, r.text
    await dispatcher.run_once()
    await receiver.wait_for(lambda: len(receiver.of_type("handshake")) == 1)
    got = receiver.of_type("handshake")[0]
    assert got.headers["authorization"] == "Bearer subscriber-token" and got.headers["x-team"] == "north"
    assert got.headers["x-safeflag-signature"] == "sha256=" + hmac.new(SECRET.encode(), got.body,
                                                                       hashlib.sha256).hexdigest()
