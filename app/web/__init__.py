"""The web app at /app: server-rendered NHS.UK design-system pages for the people in the flow, signed in
with OpenID Connect, built on the API's own policy and audit (a page shows what the same user could read
through /fhir). `install(app)` is all app/main.py calls.

- session.py: server-side sessions, `current_user` (the dependency every page starts from), CSRF.
- oidc.py, claims.py: the provider (Authorization Code + PKCE) and the claim mapping to a Principal.
- dev_sign_in.py: the development sign-in (demo borough people; loopback only).
- routes.py: sign-in, callback, sign-out; headers.py: CSP and the other browser headers on /app.
- pages.py: the pages of the people in the flow (notices.py, notice.py, desk.py their data, as the user's
  own FHIR interactions; live.py the live-update stream; fmt.py dates, ages and NHS numbers as shown).
- templates.py, templates/: Jinja with the nhsuk-frontend-jinja macros; assets.py: the pinned NHS.UK
  frontend CSS/JS fetched by the build into static/vendor/.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from app.web.headers import WebHeadersMiddleware, is_web
from app.web.session import CsrfRefused, SignInRequired, forget_dead_cookie

STATIC = Path(__file__).parent / "static"
ERROR_PAGES = {
    404: ("Page not found", "There is no page at this address, or it is not one you can open."),
    405: ("This request was refused", "This page cannot be used that way."),
}
__all__ = ["http_error_page", "install", "is_web"]


def http_error_page(request: Request, status: int) -> Response:
    """Starlette's own errors (no such page, wrong method) under /app, as a page rather than FHIR JSON."""
    from app.web.templates import render

    title, reason = ERROR_PAGES.get(status, ("Something went wrong", "This request could not be answered."))
    return render(request, "problem.jinja", status, title=title, reason=reason)


def install(app: FastAPI) -> None:
    """Mount the web app: its routes, its static files, its error pages and its response headers."""
    from app.web import pages, routes
    from app.web.templates import render

    app.include_router(routes.router)
    app.include_router(pages.router)
    app.mount("/app/static", StaticFiles(directory=STATIC), name="web-static")

    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, _exc: SignInRequired) -> Response:
        timed_out = getattr(request.state, "web_timed_out", False)
        response = RedirectResponse("/app/sign-in?timed-out=1" if timed_out else "/app/sign-in", status_code=303)
        forget_dead_cookie(request, response)
        return response

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _exc: CsrfRefused) -> Response:
        return render(request, "problem.jinja", 403, title="This request was refused",
                      reason="This form could not be accepted: it did not come from your current SafeFlag page. "
                             "Go back, reload the page and try again.")

    app.add_middleware(WebHeadersMiddleware)
