"""The Jinja environment of the web app: our templates (app/web/templates) and the NHS.UK design system's
component macros from `nhsuk-frontend-jinja` (`ChainableUndefined`, as that package asks), autoescaped.

`render` answers a page with the signed-in user (if any) and the session's CSRF token in its context, so
that `layout.jinja` can show the header's user name and sign-out form and every form its hidden token.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from jinja2 import (
    ChainableUndefined,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    select_autoescape,
)
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

from app.web.session import CSRF_FIELD, WebSession

TEMPLATES = Path(__file__).parent / "templates"
SERVICE_NAME = "SafeFlag"


@cache
def environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES), PackageLoader("nhsuk_frontend_jinja", "templates")]),
        autoescape=select_autoescape(("html", "jinja")),
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(service_name=SERVICE_NAME, csrf_field=CSRF_FIELD)
    return env


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session: WebSession | None = getattr(request.state, "web_session", None)
    csrf = session.csrf if session is not None else ""
    # the header's sign-out button: its form (nhsuk-frontend-jinja's account item) carries the CSRF token
    sign_out = Markup('Sign out<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(csrf))
    page = environment().get_template(template).render(
        request=request,
        session=session,
        user_name=session.name if session is not None and session.signed_in else None,
        csrf_token=csrf,
        sign_out_html=sign_out,
        **context,
    )
    return HTMLResponse(page, status_code=status)
