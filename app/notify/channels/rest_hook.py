"""rest-hook channel: POST the notification Bundle to the subscriber's endpoint.

Signed with `X-SafeFlag-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>` using the
subscription's write-only secret (docs/api/subscriptions.md), with the subscriber's own headers (never one
SafeFlag sets or one that routes the request, app/notify/allow.py), a timeout, and only to the hosts
and ports SAFEFLAG_WEBHOOK_ALLOW allows (checked again here: the setting may have changed).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import httpx

from app.notify.allow import allowed, host_port, reserved_header

SIGNATURE_HEADER = "X-SafeFlag-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    error: str | None = None
    status: int | None = None


async def post(
    client: httpx.AsyncClient,
    *,
    endpoint: str,
    body: bytes,
    secret: str | None,
    headers: tuple[tuple[str, str], ...],
    timeout: float,
    allow: list[str],
) -> DeliveryResult:
    if not allowed(endpoint, allow):
        return DeliveryResult(False, f"endpoint '{host_port(endpoint)}' is not allowed")
    if not secret:
        return DeliveryResult(False, "rest-hook subscription has no secret")
    out = {k: v for k, v in headers if not reserved_header(k)}  # one stored before the rule: dropped
    out["Content-Type"] = "application/fhir+json"
    out[SIGNATURE_HEADER] = sign(secret, body)
    try:
        resp = await client.post(endpoint, content=body, headers=out, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return DeliveryResult(False, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= resp.status_code < 300:
        return DeliveryResult(True, status=resp.status_code)
    return DeliveryResult(False, f"endpoint answered HTTP {resp.status_code}", resp.status_code)
