"""The pages of the people in the flow, under /app (thin routes: the user, one unit of work, a render).

- `GET /app` (home_page): a health visitor's or school nurse's open notices; a lead's desk; MASH's page.
- `GET /app/notices/list`, `/app/lead/list`: a live update (static/live.js): what changed since `?since=`.
- `GET /app/notices/overdue`, `GET /app/notices/{task}`: her overdue notices; one notice and the child's summary.
- `POST /app/notices/{task}/acknowledge`, `/reassign`: the Task's writes (CSRF checked first).
- `GET /app/lead`, `GET /app/lead/report?month=YYYY-MM`, `POST /app/lead/review/{document}`: the lead's desk.
- `GET /app/mash[?accesses=N&referrals=M]`, `POST /app/mash/reply/{communication}`: the MASH practitioner's
  page (each list paged, newest first) and reply.
- `GET /app/events`: the live-update stream (live.py).

Each page runs in ONE unit of work as the signed-in user's Principal: the FHIR interactions it makes are
decided by the API's policy and audited as the API audits them. A refused or failed interaction is the
API's own error (404 for another team's notice, 412 for a notice changed meanwhile, 422 for a bad form)
shown as a page with the same status. URLs carry resource ids only, never an NHS number.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from app.errors import BadRequest, FhirError
from app.interactions.service import FhirService
from app.observability import request_id_var
from app.security.principal import Principal
from app.vocabulary import UserRole
from app.web import desk, fmt, live, notice, notices
from app.web.positions import Positions
from app.web.session import current_user, signed_in_form
from app.web.templates import render

router = APIRouter(prefix="/app", include_in_schema=False)
User = Annotated[Principal, Depends(current_user)]
FormUser = Annotated[Principal, Depends(signed_in_form)]
NURSES = (UserRole.HEALTH_VISITOR, UserRole.SCHOOL_NURSE)
PASSERS = (*NURSES, UserRole.SAFEGUARDING_LEAD)  # may pass a notice to a colleague of the team
HEADINGS = {400: "There is a problem with this request", 403: "You cannot do this",
            404: "Page not found", 409: "This notice changed", 410: "This record was removed",
            412: "This notice changed while you were looking at it", 422: "There is a problem"}


async def _page(request: Request, user: Principal, work: Callable[[FhirService], Awaitable[Response]]) -> Response:
    """`work` in one unit of work as `user`; a FHIR error becomes an error page with its status."""
    ctx = request.app.state.ctx
    try:
        async with ctx.unit_of_work(user, request_id=request_id_var.get(),
                                    client_address=request.client.host if request.client else None,
                                    metrics=request.app.state.metrics) as svc:
            return await work(svc)
    except FhirError as exc:
        message = exc.issues[0].diagnostics if exc.issues and exc.status in (400, 412, 422) else ""
        if exc.status == 404:
            message = "The page you asked for does not exist, or it is not yours to see."
        return render(request, "problem.jinja", exc.status,
                      title=HEADINGS.get(exc.status, "Sorry, something went wrong"), reason=message)


def _now(request: Request) -> Any:
    now = request.app.state.ctx.clock.now()
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _feed(request: Request) -> live.LiveFeed:
    """The process's live feed (one poller for every open stream), made on first use."""
    feed: live.LiveFeed | None = getattr(request.app.state, "web_live", None)
    if feed is None:
        keys = Positions.from_issuer_key(request.app.state.security.key.private_key)
        ctx = request.app.state.ctx
        feed = request.app.state.web_live = live.LiveFeed(ctx.engine, keys, ctx.policy)
        feed.end_streams_on_exit()
    return feed


async def _settled(request: Request, svc: FhirService) -> int:
    """The page's position, read before its search: nothing committed later is missed (nor an outbox id
    the live feed still waits for: the feed's settled position when it is lower)."""
    feed = _feed(request)
    newest = await live.newest_in(svc.session)
    return min(newest, feed.safe_position()) if feed.running else newest


async def _position(request: Request, svc: FhirService) -> str:
    """The page's sealed position (`_settled`)."""
    return _feed(request).positions.seal(await _settled(request, svc))


def delta_limit(settings: Any) -> int:
    """How many Task changes one live update covers at most: as many as its search may name (`_id`
    values, within SAFEFLAG_SEARCH_MAX_VALUES with the notice code's one); a page further behind asks again."""
    return max(1, int(settings.search_max_values) - 1)


def _done(request: Request, to: str) -> Response:
    """After a form's write: 204 for the page's script (no reload), else back to `to` (303)."""
    if request.headers.get("x-requested-with") == "fetch":
        return Response(status_code=204)
    return RedirectResponse(to, status_code=303)


async def _live_list(request: Request, user: Principal, *, team: bool) -> Response:
    """A list's live update: the notices changed since the page's position (`?since=`) and those that
    left the list (`delta`), or the whole list when the position cannot be opened; the list's new
    position in the `SafeFlag-Event` header. A page far behind catches up in pages of `delta_limit`
    changes: the answer then stands at the last change it covers and says `SafeFlag-More: 1`, and the
    page asks again from there."""
    async def work(svc: FhirService) -> Response:
        now, feed = _now(request), _feed(request)
        owners = notices.team_refs(svc) if team else notices.own_refs(svc)
        settled = await _settled(request, svc)
        since = feed.positions.open(request.query_params.get("since"))
        look = {"show_owner": team, "heading_level": 3 if team else 2}
        if since is None:
            listing = await notices.open_notices(svc, owners, now, with_owner=team, attendances=team)
            response = render(request, "pages/_rows.jinja", listing=listing, **look)
        else:
            reader = svc.principal or user
            changed, last = await live.tasks_changed_since(
                svc.session, since, delta_limit(request.app.state.ctx.settings),
                lambda change: live.concerns(feed.policy, reader, change))
            rows, gone = (await notices.changed_notices(svc, changed, owners, now, with_owner=team, attendances=team)
                          if changed else ([], []))
            response = render(request, "pages/_rows.jinja", delta=True, rows=rows, gone=gone, **look)
            if last is not None:  # more changes follow: stand at the last one covered (if settled so far)
                settled = max(since, min(last, settled))
                if settled > since:
                    response.headers["SafeFlag-More"] = "1"
        response.headers["SafeFlag-Event"] = feed.positions.seal(settled)
        return response
    return await _page(request, user, work)


async def _inbox(request: Request, user: Principal, template: str, overdue: bool = False) -> Response:
    async def work(svc: FhirService) -> Response:
        event = await _position(request, svc)
        listing = await notices.open_notices(svc, notices.own_refs(svc), _now(request), with_owner=False,
                                             overdue=overdue)
        return render(request, template, listing=listing, show_owner=False, event=event)
    return await _page(request, user, work)


async def _desk(request: Request, user: Principal, template: str) -> Response:
    async def work(svc: FhirService) -> Response:
        now = _now(request)
        event = await _position(request, svc)
        team = await notices.open_notices(svc, notices.team_refs(svc), now, attendances=True)
        unrouted = await notices.open_notices(svc, None, now, unrouted=True, with_owner=False,  # nobody's
                                              attendances=True)
        queue, queue_withheld = await desk.review_queue(svc, team.found)
        return render(request, template, team=team, unrouted=unrouted, queue=queue, queue_withheld=queue_withheld,
                      outcomes=desk.QA_OUTCOMES, event=event)
    return await _page(request, user, work)


def page_number(request: Request, name: str) -> int:
    """The page of a list a query parameter asks for: 1 (the newest) when it is absent; a whole number
    from 1 to 99999, else 400."""
    raw = request.query_params.get(name)
    if raw is None:
        return 1
    if not re.fullmatch(r"[1-9][0-9]{0,4}", raw):
        raise BadRequest(f"'{name}' must be a page number from 1 to 99999, not '{raw[:20]}'", msg_id="SF-0408",
                         expression=name)
    return int(raw)


async def _mash(request: Request, user: Principal) -> Response:
    async def work(svc: FhirService) -> Response:
        accesses, referrals, withheld = await desk.mash_lists(
            svc, access_page=page_number(request, "accesses"), referral_page=page_number(request, "referrals"))
        return render(request, "pages/mash.jinja", accesses=accesses, referrals=referrals, withheld=withheld)
    return await _page(request, user, work)


async def home_page(request: Request, user: Principal) -> Response | None:
    """The signed-in user's home page by role; None for a role without pages of its own here."""
    if user.role in NURSES:
        return await _inbox(request, user, "pages/inbox.jinja")
    if user.role == UserRole.SAFEGUARDING_LEAD:
        return await _desk(request, user, "pages/lead.jinja")
    if user.role == UserRole.MASH_PRACTITIONER:
        return await _mash(request, user)
    return None


@router.get("/notices/list")
async def inbox_list(request: Request, user: User) -> Response:
    return await _live_list(request, user, team=False)


@router.get("/notices/overdue")
async def overdue(request: Request, user: User) -> Response:
    return await _inbox(request, user, "pages/overdue.jinja", overdue=True)


@router.get("/notices/{task_id}")
async def notice_view(request: Request, task_id: str, user: User) -> Response:
    async def work(svc: FhirService) -> Response:
        page = await notice.notice_page(svc, task_id, _now(request))
        team = await notice.colleagues(svc) if page.open and user.role in PASSERS else []
        return render(request, "pages/notice.jinja", page=page, colleagues=team)
    return await _page(request, user, work)


@router.post("/notices/{task_id}/acknowledge")
async def acknowledge(request: Request, task_id: str, user: FormUser) -> Response:
    form = await request.form()

    async def work(svc: FhirService) -> Response:
        await notice.acknowledge(svc, task_id, str(form.get("version", "")), str(form.get("note", "")),
                                 _now(request))
        return _done(request, "/app")
    return await _page(request, user, work)


@router.post("/notices/{task_id}/reassign")
async def reassign(request: Request, task_id: str, user: FormUser) -> Response:
    form = await request.form()

    async def work(svc: FhirService) -> Response:
        await notice.reassign(svc, task_id, str(form.get("version", "")), str(form.get("owner", "")))
        return _done(request, "/app/lead" if user.role == UserRole.SAFEGUARDING_LEAD else "/app")
    return await _page(request, user, work)


@router.get("/lead")
async def lead_desk(request: Request, user: User) -> Response:
    return await _desk(request, user, "pages/lead.jinja")


@router.get("/lead/list")
async def lead_list(request: Request, user: User) -> Response:
    return await _live_list(request, user, team=True)


@router.get("/lead/report")
async def report(request: Request, user: User) -> Response:
    month = request.query_params.get("month") or f"{_now(request):%Y-%m}"

    async def work(svc: FhirService) -> Response:
        orgs = await desk.governance(svc, month, _now(request))
        return render(request, "pages/report.jinja", month=month, month_name=fmt.uk_date(month), orgs=orgs)
    return await _page(request, user, work)


@router.post("/lead/review/{document_id}")
async def review(request: Request, document_id: str, user: FormUser) -> Response:
    form = await request.form()

    async def work(svc: FhirService) -> Response:
        await desk.review(svc, document_id, str(form.get("outcome", "")), str(form.get("note", "")))
        return _done(request, "/app/lead#quality")
    return await _page(request, user, work)


@router.get("/mash")
async def mash(request: Request, user: User) -> Response:
    return await _mash(request, user)


@router.post("/mash/reply/{communication_id}")
async def mash_reply(request: Request, communication_id: str, user: FormUser) -> Response:
    form = await request.form()

    async def work(svc: FhirService) -> Response:
        await desk.reply(svc, communication_id, str(form.get("text", "")), _now(request))
        return _done(request, "/app/mash")
    return await _page(request, user, work)


@router.get("/events")
async def events(request: Request, user: User) -> Response:
    """Server-sent events for this reader alone (live.py); the page fetches what changed on each."""
    feed = _feed(request)
    async with request.app.state.ctx.unit_of_work(user) as svc:
        reader = svc.principal or user  # enriched as her pages are: her team's roles and her own
    since = live.given_position(request.headers.get("last-event-id") or request.query_params.get("since"))
    return StreamingResponse(live.stream(feed, reader, since), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
