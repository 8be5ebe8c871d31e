"""Request ids, Prometheus metrics and structured JSON logs (docs/deployment.md).

One pure-ASGI middleware (no BaseHTTPMiddleware: it costs on every request) stamps `X-Request-Id` on
every response (echoed when the client sends a sane one, generated otherwise), times the request,
counts it by FHIR interaction (the route name) and status, and writes one JSON access-log line.
It must stay the outermost middleware so that every response, errors included, carries the id.

A client that goes away before its request body has arrived (Starlette's `ClientDisconnect`) is no
server error: nothing is answered (nobody is listening), it is logged at INFO as "client aborted"
and counted with status 499, the "client closed request" convention of nginx.

Metric names follow https://prometheus.io/docs/practices/naming/ (`_total`, `_seconds`).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import Issue, operation_outcome
from app.storage.failures import as_fhir_error

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# An echoed id ends up in our logs and in a response header: accept only short, plain tokens.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = logging.getLogger("safeflag")
CLIENT_CLOSED_REQUEST = 499


class Metrics:
    """One registry per app, so tests see exact counts and the default process registry stays clean."""

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
        self.in_progress = Gauge(
            "safeflag_http_requests_in_progress", "HTTP requests being served", registry=self.registry
        )
        self.pool_checked_out = Gauge(
            "safeflag_db_pool_checked_out", "Database connections in use", registry=self.registry
        )
        self.pool_size = Gauge("safeflag_db_pool_size", "Database pool size", registry=self.registry)
        self.ed_unrouted = Counter(
            "safeflag_ed_unrouted_total", "ED notices routed to no health visitor, school nurse or team, by reason",
            ["reason"], registry=self.registry,
        )
        self.notify_lease_lost = Counter(
            "safeflag_notify_lease_lost_total",
            "Delivery outcomes not recorded because the lease had gone to another dispatcher, by what was to be recorded",
            ["stage"], registry=self.registry,
        )
        self.heap_freezes = Counter(
            "safeflag_heap_freezes_total",
            "Freezes of the long-lived heap after a slow full garbage collection (each one full collection's pause)",
            registry=self.registry,
        )
        self.pool_overflow = Gauge(
            "safeflag_db_pool_overflow", "Database connections opened beyond the pool size", registry=self.registry
        )

    def observe_pool(self, pool: Any) -> None:
        """Read the SQLAlchemy QueuePool counters at scrape time (no cost on the request path)."""
        for gauge, name in ((self.pool_checked_out, "checkedout"), (self.pool_size, "size"),
                            (self.pool_overflow, "overflow")):
            reading = getattr(pool, name, None)
            if callable(reading):
                gauge.set(max(0, reading()))


def internal_error_outcome() -> dict[str, Any]:
    return operation_outcome(
        [Issue("exception", "Internal server error; quote the X-Request-Id when reporting it", msg_id="SF-0500")]
    )


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = request_id_var.set(rid)
        start = time.perf_counter()
        state = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            state["status"] = CLIENT_CLOSED_REQUEST
        except Exception as exc:
            # Handled here rather than by Starlette's ServerErrorMiddleware, which sits outside this
            # middleware: its 500 would lack X-Request-Id and its log line the request id.
            failure = as_fhir_error(exc)  # a database that is down or too slow: 503, not 500
            status = failure.status if failure else 500
            if failure is None:
                log.exception("unhandled error", extra={"method": scope["method"], "path": scope["path"]})
            state["status"] = status
            if not state["started"]:
                body = failure.outcome() if failure else internal_error_outcome()
                headers = [(k.lower().encode(), v.encode()) for k, v in (failure.headers if failure else {}).items()]
                await send_wrapper({
                    "type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/fhir+json; charset=utf-8"), *headers],
                })
                await send({"type": "http.response.body", "body": orjson.dumps(body)})
        finally:
            # a read cancelled because its client left (CancelOnDisconnectMiddleware) is a client abort too
            gone = scope.get("safeflag.client_gone") and not state["started"]
            self._record(scope, CLIENT_CLOSED_REQUEST if gone else int(state["status"]), time.perf_counter() - start)
            self.metrics.in_progress.dec()
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        # FastAPI puts the matched route in the scope; its name is the FHIR interaction (`read`, `create`...).
        interaction = getattr(scope.get("route"), "name", None) or "unmatched"
        self.metrics.requests.labels(interaction, str(status)).inc()
        self.metrics.latency.labels(interaction).observe(elapsed)
        level = logging.ERROR if status >= 500 else logging.INFO
        if log.isEnabledFor(level):
            # The path only: query strings carry NHS numbers, which do not belong in logs.
            message = "client aborted" if status == CLIENT_CLOSED_REQUEST else "request"
            log.log(level, message, extra={
                "method": scope["method"], "path": scope["path"], "status": status,
                "interaction": interaction, "duration_ms": round(elapsed * 1000, 2),
            })


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SAFE_ID.match(candidate):
                return candidate
            break
    return str(uuid.uuid4())


_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}


SQL_EXCERPT = 300  # characters of a failed statement's SQL kept in a log line


def clip_sql(text: str) -> str:
    """SQLAlchemy errors quote the whole statement (`[SQL: ...]`): a 1,000-value search made a 136 KB log
    line. Keep a short excerpt of each."""
    start = text.find("[SQL: ")
    while start != -1:
        end = text.find("]\n", start)
        end = len(text) if end == -1 else end
        if end - start > SQL_EXCERPT:
            text = f"{text[:start + SQL_EXCERPT]} ... ({end - start} characters)" + text[end:]
        start = text.find("[SQL: ", start + 6)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, msg, request_id when inside a request, extras."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": clip_sql(record.getMessage()),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = clip_sql(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("safeflag")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def uvicorn_log_config() -> dict[str, Any]:
    """logging.dictConfig for `uvicorn.run`: every line on stderr is JSON, in each worker process too.

    uvicorn's own access log is off (the middleware writes a richer one); its error log stays at WARNING.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "app.observability.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {
            "uvicorn": {"level": "WARNING"},
            "uvicorn.access": {"level": "WARNING", "propagate": False, "handlers": []},
        },
    }
