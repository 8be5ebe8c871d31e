"""Fixtures for notification tests: a real receiver, a dispatcher on a real-clock context, helpers."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.context import AppContext
from app.main import create_app
from app.notify.delivery import RetryPolicy
from app.notify.dispatcher import Dispatcher
from app.resource_rules import resource_rules
from app.storage.migrate import upgrade
from tests.conftest import BASE_URL, _pg_url, admin_token, empty_tables, forget_lanes
from tests.notify.ed_data import CLOCK
from tests.support.postgres import PgCluster
from tests.support.receiver import Receiver

SECRET = "s" * 40
COMM_CATEGORY = "https://fhir.safeflag.example/CodeSystem/safeguarding-communication-category"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "https://fhir.safeflag.example/SubscriptionTopic/"


@pytest.fixture(scope="session", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def nctx(request: pytest.FixtureRequest, pg_cluster: PgCluster | None) -> AsyncIterator[AppContext]:
    """A context on each database whose clock runs in real time (delivery timing is real) from a fixed
    instant (ed_data.CLOCK, reset before each test)."""
    tmp = Path(tempfile.mkdtemp(prefix="safeflag-notify-"))
    url = f"sqlite+aiosqlite:///{tmp / 'n.db'}" if request.param == "sqlite" else _pg_url(pg_cluster, "safeflag_notify")
    settings = Settings(data_dir=tmp, database_url=url, base_url=BASE_URL, dispatcher_in_process=False,
                        notify_poll_seconds=0.05, notify_lease_seconds=2.0, rate_limit_per_second=0,
                        _env_file=None)  # type: ignore[call-arg]
    context = AppContext.from_settings(settings, clock=CLOCK, interceptors=resource_rules())
    await upgrade(context.engine)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def notify_ctx(nctx: AppContext) -> AppContext:
    async with nctx.engine.begin() as conn:
        await empty_tables(conn)
    await forget_lanes(nctx)
    CLOCK.reset()
    return nctx


@pytest.fixture
async def api(notify_ctx: AppContext, receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's API client; the test's receiver is allowed (by its exact port) besides the default
    entries, which allow loopback's default ports only."""
    settings, default = notify_ctx.settings, notify_ctx.settings.webhook_allow
    settings.webhook_allow = f"{default},127.0.0.1:{receiver.port}"
    app = create_app(ctx=notify_ctx)
    headers = {"Authorization": f"Bearer {admin_token(notify_ctx)}"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL,
                                     headers=headers) as c:
            c.app = app  # type: ignore[attr-defined]
            yield c
    finally:
        settings.webhook_allow = default


@pytest.fixture
async def dispatcher(notify_ctx: AppContext) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(notify_ctx, retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2))
    try:
        yield d
    finally:
        await d.http.aclose()


def subscription(endpoint: str, *, topic: str = "ed-attendance", filters: tuple[str, ...] = (),
                 content: str = "id-only", channel: str = "rest-hook", heartbeat: int | None = None,
                 secret: str | None = SECRET, headers: tuple[str, ...] = ()) -> dict:
    sub: dict = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": TOPIC + topic,
        "channel": {
            "type": channel,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": content}]},
        },
    }
    if channel == "rest-hook":
        sub["channel"]["endpoint"] = endpoint
    if filters:
        sub["_criteria"] = {"extension": [{"url": BACKPORT + "backport-filter-criteria", "valueString": f}
                                          for f in filters]}
    if heartbeat:
        sub["channel"]["extension"] = [{"url": BACKPORT + "backport-heartbeat-period", "valueUnsignedInt": heartbeat}]
    if headers:
        sub["channel"]["header"] = list(headers)
    if secret:
        sub["extension"] = [{"url": "https://fhir.safeflag.example/StructureDefinition/subscription-secret",
                             "valueString": secret}]
    return sub


def notice(recipient: str, category: str = "ed-attendance", patient: str = "Patient/p1") -> dict:
    return {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": category}]}],
        "subject": {"reference": patient},
        "recipient": [{"reference": recipient}],
        "sent": "2026-03-02T10:00:00Z",
    }
