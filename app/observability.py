"""Request ids, Prometheus metrics and structured JSON logs.

One pure-ASGI middleware (no BaseHTTPMiddleware: it costs on every request) stamps `X-Request-Id`
(echoed when the client sends a sane one), times the request and counts it by interaction and status.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
import uuid
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = logging.getLogger("safeflag")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "safeflag_http_requests_total", "HTTP requests by FHIR interaction and status",
            ["interaction", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "safeflag_http_request_duration_seconds", "HTTP request latency by FHIR interaction",
            ["interaction"], registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.pool_checked_out = Gauge(
            "safeflag_db_pool_checked_out", "Database connections in use", registry=self.registry
        )
        self.pool_size = Gauge("safeflag_db_pool_size", "Database pool size", registry=self.registry)


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                rid = candidate if _SAFE_ID.match(candidate) else None
                break
        rid = rid or str(uuid.uuid4())
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            interaction = getattr(route, "name", None) or "unmatched"
            status = status_holder["status"]
            self.metrics.requests.labels(interaction, str(status)).inc()
            self.metrics.latency.labels(interaction).observe(elapsed)
            if status >= 500:
                log.error("request failed", extra={"method": scope["method"], "path": scope["path"], "status": status})
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("request", extra={"method": scope["method"], "path": scope["path"], "status": status,
                                            "ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)


_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("safeflag")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
