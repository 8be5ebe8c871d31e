"""Sign-in, sign-out and the pages around them, under /app.

- `GET /app/sign-in`: the sign-in page (the provider's button; the development sign-in's people when on).
- `GET /app/sign-in/start`: a pending session (state, nonce, PKCE verifier) and off to the provider.
- `GET /app/auth/callback`: the provider's answer; a verified ID token whose claims map to a role signs in
  (a new session), one that maps to none gets the refusal page (403). Audited either way.
- `POST /app/sign-out`: ends the session (CSRF checked), then `GET /app/signed-out`; signed in through a
  provider that publishes an `end_session_endpoint`, by way of the provider's own sign-out first (the
  signing-out page posts the ID token there; the provider sends the browser back to `/app/signed-out`).
- `POST /app/dev-sign-in`: the development sign-in (app/web/dev_sign_in.py).
- `GET /app`: the home page (the signed-in user's pages build on `current_user`).
Nothing here puts an identifier in a URL: the provider's `code` and `state` are the only query values.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from app.clock import is_loopback
from app.security.principal import ClaimError, Principal
from app.web.audit import audit_refused_sign_in, audit_sign_in, audit_sign_out
from app.web.claims import Unmapped, principal_claims
from app.web.dev_sign_in import PEOPLE, person
from app.web.oidc import OidcClient, SignInFailed
from app.web.pages import home_page
from app.web.session import (
    WebSession,
    clear_cookie,
    current_user,
    forget_dead_cookie,
    form_session,
    session_of,
    set_cookie,
    store,
)
from app.web.templates import render

log = logging.getLogger("safeflag")
router = APIRouter(prefix="/app", include_in_schema=False)
UNMAPPED = "Your account has no SafeFlag role, so you cannot use SafeFlag."


def _oidc(request: Request) -> OidcClient:
    client: OidcClient | None = getattr(request.app.state, "web_oidc", None)
    if client is None:
        client = request.app.state.web_oidc = OidcClient(request.app.state.ctx.settings)
    return client


def _dev_sign_in(request: Request) -> bool:
    return bool(request.app.state.ctx.settings.web_dev_sign_in) and is_loopback(
        request.client.host if request.client else "")


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def _signed_in(request: Request, claims: dict[str, str], replaces: str | None,
                     id_token: str | None = None) -> Response:
    principal = Principal.from_claims(claims, base=request.app.state.ctx.settings.fhir_base)
    # the ID token is kept only as the hint RP-initiated logout sends back to its provider
    cookie, _session = await store(request).create(claims=claims, replaces=replaces,
                                                   login={"id_token": id_token} if id_token else None)
    await audit_sign_in(request, principal)
    response = _see_other("/app")
    set_cookie(request, response, cookie)
    return response


@router.get("")
async def home(request: Request, user: Annotated[Principal, Depends(current_user)]) -> Response:
    return await home_page(request, user) or render(request, "home.jinja", role=user.role)


@router.get("/sign-in")
async def sign_in(request: Request) -> Response:
    found = await session_of(request)
    if found is not None and found.signed_in:
        return _see_other("/app")
    settings = request.app.state.ctx.settings
    cookie = None
    if _dev_sign_in(request) and found is None:  # the development form needs a CSRF token before sign-in
        cookie, found = await store(request).create()
        request.state.web_session = found
    response = render(request, "sign_in.jinja", provider=_oidc(request).configured,
                      people=PEOPLE if _dev_sign_in(request) else (),
                      idle_minutes=settings.web_idle_timeout_seconds // 60,
                      timed_out=request.query_params.get("timed-out") == "1")
    if cookie:
        set_cookie(request, response, cookie)
    else:
        forget_dead_cookie(request, response)
    return response


@router.get("/sign-in/start")
async def sign_in_start(request: Request) -> Response:
    client = _oidc(request)
    if not client.configured:
        return _see_other("/app/sign-in")
    try:
        url, login = await client.start()
    except SignInFailed as exc:
        log.warning("web sign-in could not start: %s", exc)
        return render(request, "problem.jinja", 503, title="Sign-in is unavailable",
                      reason="The identity provider cannot be reached. Try again in a few minutes.")
    found = await session_of(request)
    cookie, _pending = await store(request).create(login=login, replaces=found.key if found else None)
    response = RedirectResponse(url, status_code=302)
    set_cookie(request, response, cookie)
    return response


@router.get("/auth/callback")
async def callback(request: Request) -> Response:
    client = _oidc(request)
    found = await session_of(request)
    login = found.login if found is not None else None
    state, code = request.query_params.get("state"), request.query_params.get("code")
    if found is None or not login or not state or state != login.get("state"):
        # no sign-in under way in this browser (or another's answer): start again, nothing recorded
        return _see_other("/app/sign-in")
    if not code:
        await store(request).end(found.key)
        reason = request.query_params.get("error") or "no authorization code"
        await audit_refused_sign_in(request, client.issuer, None, f"sign-in refused by the identity provider: {reason}"[:200])
        return _refused(request, "The identity provider did not sign you in.", failed=True)
    try:
        # another party's token is checked on the wall clock, as bearer tokens are (a test clock,
        # app/clock.py, dates records, never tokens)
        id_claims, id_token = await client.finish(login, code, int(time.time()))
        claims = principal_claims(id_claims, request.app.state.ctx.settings, client.issuer)
        Principal.from_claims(claims, base=request.app.state.ctx.settings.fhir_base)
    except SignInFailed as exc:
        await store(request).end(found.key)
        await audit_refused_sign_in(request, client.issuer, None, str(exc))
        return _refused(request, "The identity provider's answer could not be verified, so you have not been "
                                 "signed in.", failed=True)
    except (Unmapped, ClaimError) as exc:
        await store(request).end(found.key)
        sub = id_claims.get("sub")
        await audit_refused_sign_in(request, client.issuer, sub if isinstance(sub, str) else None,
                                    f"sign-in refused: {exc}")
        return _refused(request, UNMAPPED)
    except ValueError as exc:  # SAFEFLAG_WEB_ROLE_MAP is wrong (`safeflag serve` refuses to start with it)
        await store(request).end(found.key)
        log.error("web sign-in is misconfigured: %s", exc)
        return render(request, "problem.jinja", 503, title="Sign-in is unavailable",
                      reason="Sign-in is not set up correctly on this server. Tell its administrator.")
    return await _signed_in(request, claims, found.key, id_token)


def _refused(request: Request, reason: str, *, failed: bool = False) -> Response:
    request.state.web_session = None
    response = render(request, "refused.jinja", 403, reason=reason, failed=failed)
    clear_cookie(request, response)
    return response


@router.post("/dev-sign-in")
async def dev_sign_in(request: Request, found: Annotated[WebSession, Depends(form_session)]) -> Response:
    chosen = person(str((await request.form()).get("person", "")))
    if not _dev_sign_in(request) or chosen is None:
        await audit_refused_sign_in(request, "development sign-in", None, "development sign-in refused: "
                                    + ("not available here" if not _dev_sign_in(request) else "no such person"))
        return render(request, "problem.jinja", 403, title="This request was refused",
                      reason="Development sign-in is not available here.")
    return await _signed_in(request, chosen.claims(), found.key)


@router.post("/sign-out")
async def sign_out(request: Request, found: Annotated[WebSession, Depends(form_session)]) -> Response:
    await store(request).end(found.key)
    await audit_sign_out(request, found)
    id_token = (found.login or {}).get("id_token")
    ending = await _oidc(request).end_session(id_token) if isinstance(id_token, str) else None
    if ending is None:
        response: Response = _see_other("/app/signed-out")
    else:  # on to the provider's own sign-out, by a form post (the ID token names the person: no URL)
        endpoint, fields = ending
        request.state.web_session = None
        request.state.web_form_action = str(httpx.URL(endpoint).copy_with(path="/", query=None)).rstrip("/")
        response = render(request, "signing_out.jinja", endpoint=endpoint, fields=fields)
    clear_cookie(request, response)
    return response


@router.get("/signed-out")
async def signed_out(request: Request) -> Response:
    request.state.web_session = None
    return render(request, "signed_out.jinja")

