"""The Jinja environment of the web app: our templates (app/web/templates) and the NHS.UK design system's
component macros from `nhsuk-frontend-jinja` (`ChainableUndefined`, as that package asks), autoescaped.

`card` is a notice's card on a list (pages/_card.jinja), rendered once for each distinct notice row and look:
a list shows the same rows at every view, and its 200 cards were a third of the lead's desk's rendering.
`review_form`, a referral copy's review form on the lead's desk, is kept the same way for each copy and session.

`render` answers a page with the signed-in user (if any) and the session's CSRF token in its context, so
that every form can carry its hidden token, and with the page's top (skip link, NHS.UK header with the
user's name and sign-out form) and bottom (footer) already rendered: they depend on the user's name and
the session's token alone, so they are rendered once for each and kept (`chrome`), not at every view.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import cache, lru_cache
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
CARDS = 4096  # cards kept: a few teams' lists of open notices (a card is about 2 kB)
CHROMES = 1024  # page tops kept: one for each signed-in session in use (about 3 kB each)


@cache
def environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES), PackageLoader("nhsuk_frontend_jinja", "templates")]),
        autoescape=select_autoescape(("html", "jinja")),
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(service_name=SERVICE_NAME, csrf_field=CSRF_FIELD, card=card, review_form=review_form)
    return env


def card(row: Hashable, show_owner: Any, heading_level: Any) -> Markup:
    """A notice's card (`row` a NoticeRow, which holds everything the card shows, as strings already in UK
    form), saying whom it is with when `show_owner`, under a heading of `heading_level` (2 unless given)."""
    return _card(row, bool(show_owner), int(heading_level or 2))


@lru_cache(maxsize=CARDS)
def _card(row: Hashable, show_owner: bool, heading_level: int) -> Markup:
    """`card`, the same for the same row and look: a function of them alone, so it is kept."""
    page = environment().get_template("pages/_card.jinja")
    return Markup(page.render(n=row, show_owner=show_owner, heading_level=heading_level))


def review_form(item: Any, csrf: str, outcomes: dict[str, str]) -> Markup:
    """A referral copy's review form on the lead's desk (pages/_review.jinja): `item` a desk.Item (its id,
    what, who and when are shown), carrying the session's `csrf` token, with a choice of `outcomes`."""
    return _review_form(item.res_id, item.what, item.who, item.when, csrf, tuple(outcomes.items()))


@lru_cache(maxsize=CARDS)
def _review_form(res_id: str, what: str, who: str, when: str, csrf: str, outcomes: tuple[tuple[str, str], ...]
                 ) -> Markup:
    """`review_form`, the same for the same copy, session and outcomes: kept, as a card is (the desk's 50
    forms took a millisecond to render at each view)."""
    page = environment().get_template("pages/_review.jinja")
    item = {"res_id": res_id, "what": what, "who": who, "when": when}
    return Markup(page.render(item=item, csrf_token=csrf, outcomes=dict(outcomes)))


def chrome(user_name: str | None, csrf: str) -> tuple[Markup, Markup]:
    """(top, bottom) of a page for the signed-in user's name (None: nobody signed in) and the session's
    CSRF token, which the header's sign-out form carries."""
    return _top(user_name, csrf), _bottom()


@lru_cache(maxsize=CHROMES)
def _top(user_name: str | None, csrf: str) -> Markup:
    # the header's sign-out button: its form (nhsuk-frontend-jinja's account item) carries the CSRF token
    sign_out = Markup('Sign out<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(csrf))
    top = environment().get_template("_top.jinja")
    return Markup(top.render(user_name=user_name, sign_out_html=sign_out))


@cache
def _bottom() -> Markup:
    return Markup(environment().get_template("_bottom.jinja").render())


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session: WebSession | None = getattr(request.state, "web_session", None)
    csrf = session.csrf if session is not None else ""
    user_name = session.name if session is not None and session.signed_in else None
    top, bottom = chrome(user_name, csrf)
    page = environment().get_template(template).render(
        request=request,
        session=session,
        user_name=user_name,
        csrf_token=csrf,
        page_top=top,
        page_bottom=bottom,
        **context,
    )
    return HTMLResponse(page, status_code=status)
