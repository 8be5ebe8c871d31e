"""CSRF on every form: each POST route the app serves under /app (read from the app's own routes, whichever
router added it, and pinned, so a new one fails here until it is tried), refuses a signed-in user's post without the session's token or with another
token (403, the refusal page), changes nothing, and audits the refusal; the same post with the token
gets past the check."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from app.context import AppContext
from app.main import create_app
from app.web.session import COOKIE
from tests.conftest import admin_token

REFUSED = "This form could not be accepted"


@asynccontextmanager
async def _signed_in(ctx: AppContext) -> AsyncIterator[tuple[httpx.AsyncClient, str, list[str]]]:
    """Sam Lead signed in through the development sign-in; the client, her CSRF token, the POST paths."""
    saved = ctx.settings
    ctx.settings = saved.model_copy(update={"web_dev_sign_in": True})
    try:
        app = create_app(ctx=ctx)
        posts = sorted(rc.path_format for rc in iter_route_contexts(app.routes)  # every router's, as served
                       if rc.path_format and rc.path_format.startswith("/app") and "POST" in (rc.methods or ()))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50123))
        async with httpx.AsyncClient(transport=transport, base_url=ctx.settings.base_url) as http:
            page = await http.get("/app/sign-in")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]  # type: ignore[index]
            signed = await http.post("/app/dev-sign-in", data={"csrf_token": token, "person": "lead"})
            assert signed.status_code == 303
            home = await http.get("/app")
            token = re.search(r'name="csrf_token" value="([^"]+)"', home.text)[1]  # type: ignore[index]
            yield http, token, posts
    finally:
        ctx.settings = saved


async def test_every_form_post_is_refused_without_the_sessions_token(clean_ctx: AppContext) -> None:
    async with _signed_in(clean_ctx) as (http, token, posts):
        assert posts == ["/app/dev-sign-in", "/app/lead/review/{document_id}", "/app/mash/reply/{communication_id}",
                         "/app/notices/{task_id}/acknowledge", "/app/notices/{task_id}/reassign", "/app/sign-out"]
        cookie = http.cookies[COOKIE]
        for path in posts:
            url = re.sub(r"\{[^}]+\}", "no-such-record", path)
            for form in ({}, {"csrf_token": "not-the-token"}, {"csrf_token": ""}):
                answer = await http.post(url, data={**form, "person": "hv", "version": "1", "text": "x"})
                assert answer.status_code == 403 and REFUSED in answer.text, (path, form, answer.status_code)
            assert http.cookies[COOKIE] == cookie  # still signed in as herself: nothing changed
            assert (await http.get("/app")).status_code == 200
        with_token = await http.post("/app/notices/no-such-record/acknowledge", data={"csrf_token": token, "version": "1"})
        assert with_token.status_code == 404  # past the check: the notice itself is not found
        events = (await http.get("/fhir/AuditEvent", params={"outcome": "4", "_count": "100"},
                                 headers={"Authorization": "Bearer " + admin_token(clean_ctx)})).json()
    refusals = [e["resource"]["outcomeDesc"] for e in events["entry"] if e["search"]["mode"] == "match"
                and e["resource"].get("outcomeDesc", "").startswith("form refused")]
    assert sorted(refusals) == sorted(
        f"form refused: it did not carry the session's CSRF token: POST {re.sub(r'{[^}]+}', 'no-such-record', path)}"
        for path in posts for _ in range(3))


@pytest.mark.parametrize("path", ["/app/sign-out", "/app/notices/no-such-record/acknowledge"])
async def test_a_form_post_with_no_session_at_all_is_refused(clean_ctx: AppContext, path: str) -> None:
    transport = httpx.ASGITransport(app=create_app(ctx=clean_ctx), client=("127.0.0.1", 50123))
    async with httpx.AsyncClient(transport=transport, base_url=clean_ctx.settings.base_url) as http:
        answer = await http.post(path, data={"csrf_token": "guessed"})
    assert answer.status_code == 403 and REFUSED in answer.text
