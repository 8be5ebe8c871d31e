"""Server-side sessions for the web app, and `current_user`, the dependency every page starts from.

The browser holds only a random value in an HttpOnly, SameSite=Lax cookie scoped to `/app` (Secure when
the service is reached over TLS: `SAFEFLAG_WEB_COOKIE_SECURE`, by default when the base URL is https);
the `web_session` table holds its SHA-256, the user's claims, the form (CSRF) token and when it was last
used. A session unused for longer than `SAFEFLAG_WEB_IDLE_TIMEOUT_SECONDS` (15 minutes; time from the
injected clock) is ended on its next use, and the sign-in page says why. One nobody comes back to is
cleared out a day after its timeout (`ENDED_KEPT`, so that someone back the next morning is still told
why, and her return is not mistaken for a forged cookie) when any session is created; either way its
end is audited once (whoever deletes the row reports it). A sign-in that never finished is cleared out
at its timeout. Sign-out deletes the row, so the old cookie no longer works. Signing in issues a new
value (no session fixation).

`current_user(request) -> Principal` gives the signed-in user as the same `Principal` the API's policy
and audit use, or sends the browser to the sign-in page. Every form carries `csrf_token`; `form_session`
checks it against the session's token (a forged or missing one: 403, nothing done).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request
from sqlalchemy import bindparam, delete, insert, null, select, update
from starlette.responses import Response

from app.security.principal import Principal
from app.storage.db import BOOKKEEPING
from app.storage.web_tables import web_session

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.config import Settings
    from app.ports import Clock

TIMED_OUT = "session ended after its idle timeout"
ENDED_KEPT = timedelta(days=1)  # how long a timed-out session waits for its user before it is cleared out
COOKIE = "safeflag_session"
COOKIE_PATH = "/app"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """No signed-in session: the browser is sent to the sign-in page."""


class CsrfRefused(Exception):
    """A form post without the session's CSRF token: refused with 403, nothing done."""


@dataclass
class WebSession:
    key: str  # SHA-256 of the cookie's value
    csrf: str
    claims: dict[str, Any] | None = None
    login: dict[str, Any] | None = None
    ended: bool = False  # found, but past its idle timeout (and now deleted)

    @property
    def signed_in(self) -> bool:
        return self.claims is not None

    @property
    def name(self) -> str:
        claims = self.claims or {}
        return str(claims.get("name") or claims.get("sub") or "")


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


class Context(Protocol):
    """What the sessions use of the app's context (`app.state.ctx`, composed in app/main.py)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...


# a live session's last use moved to now, and what it holds (the idle timeout measured as `load` always has)
_TOUCH = (update(web_session)
          .where(web_session.c.id_hash == bindparam("key"), web_session.c.last_seen >= bindparam("since"))
          .values(last_seen=bindparam("now"))
          .returning(web_session.c.csrf, web_session.c.claims, web_session.c.login))

_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


class SessionStore:
    """`on_swept` is told of each signed-in session that `create` clears out past its idle timeout (its end,
    for the audit trail), after the transaction that deleted it."""

    def __init__(self, ctx: Context, on_swept: Callable[[WebSession], Awaitable[None]] | None = None) -> None:
        self.ctx = ctx
        self.timeout = timedelta(seconds=ctx.settings.web_idle_timeout_seconds)
        self.on_swept = on_swept

    def now(self) -> datetime:
        return _naive(self.ctx.clock.now())

    async def load(self, cookie: str | None) -> WebSession | None:
        """The session a cookie names, its last use moved to now; None when there is none. A session past
        its idle timeout is deleted and returned with `ended` set (so that its end can be audited)."""
        if not cookie or len(cookie) > 128:
            return None
        key = _hash(cookie)
        now = self.now()
        async with self.ctx.sessionmaker() as db, db.begin():
            # every page view moves its session's last use: a commit of its own, which need not wait for
            # the disk (on SQLite); a power loss could only take back that move, and end a session sooner.
            # One statement moves it and reads the session when it is still live (on PostgreSQL in one
            # round trip: the statement is its own transaction, no BEGIN or COMMIT); only a session not
            # found so is read again, to tell one past its timeout from none.
            one_trip = db.get_bind().dialect.name == "postgresql"
            await db.connection(execution_options={**BOOKKEEPING, **(_AUTOCOMMIT if one_trip else {})})
            live = (await db.execute(_TOUCH, {"key": key, "now": now, "since": now - self.timeout})).first()
            if live is not None:
                return WebSession(key, live.csrf, live.claims, live.login)
            row = (await db.execute(select(web_session).where(web_session.c.id_hash == key))).first()
            if row is None:
                return None
            found = WebSession(key, row.csrf, row.claims, row.login)
        async with self.ctx.sessionmaker() as db, db.begin():  # its end is kept durably, as it is audited
            gone = (await db.execute(delete(web_session).where(web_session.c.id_hash == key)
                                     .returning(web_session.c.id_hash))).first()
        if gone is None:  # swept meanwhile by another request, which reported its end
            found.claims = None
        found.ended = True
        return found

    async def create(self, *, claims: dict[str, Any] | None = None,
                     login: dict[str, Any] | None = None, replaces: str | None = None) -> tuple[str, WebSession]:
        """A new session (a new cookie value) with its own CSRF token; `replaces` (a key) is deleted in the
        same transaction. On the way, sign-ins never finished are cleared out past their idle timeout, and
        sessions a day past it (each told to `on_swept`)."""
        cookie = secrets.token_urlsafe(32)
        found = WebSession(_hash(cookie), secrets.token_urlsafe(32), claims, login)
        now = self.now()
        async with self.ctx.sessionmaker() as db, db.begin():
            await db.execute(delete(web_session).where(web_session.c.claims.is_(None),
                                                       web_session.c.last_seen < now - self.timeout))
            swept = (await db.execute(delete(web_session).where(web_session.c.last_seen < now - self.timeout - ENDED_KEPT)
                                      .returning(web_session.c.id_hash, web_session.c.csrf,
                                                 web_session.c.claims))).all()
            if replaces:
                await db.execute(delete(web_session).where(web_session.c.id_hash == replaces))
            await db.execute(insert(web_session).values(  # no claims yet: SQL NULL (not JSON null), found above
                id_hash=found.key, claims=null() if claims is None else claims, login=login, csrf=found.csrf,
                created_at=now, last_seen=now))
        for row in swept:
            if row.claims is not None and self.on_swept is not None:
                await self.on_swept(WebSession(row.id_hash, row.csrf, row.claims, ended=True))
        return cookie, found

    async def end(self, key: str) -> None:
        async with self.ctx.sessionmaker() as db, db.begin():
            await db.execute(delete(web_session).where(web_session.c.id_hash == key))


def store(request: Request) -> SessionStore:
    async def swept(session: WebSession) -> None:
        from app.web.audit import audit_sign_out

        # not this request's doing: its client address is not the ended session's
        await audit_sign_out(request, session, TIMED_OUT, client=False)

    return SessionStore(request.app.state.ctx, swept)


def secure_cookie(request: Request) -> bool:
    mode = request.app.state.ctx.settings.web_cookie_secure
    if mode != "auto":
        return bool(mode == "always")
    return request.url.scheme == "https" or request.app.state.ctx.settings.base_url.startswith("https:")


def set_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="lax",
                        secure=secure_cookie(request))


def clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure_cookie(request))


def forget_dead_cookie(request: Request, response: Response) -> None:
    """Clear a cookie whose session has ended (idle) or does not exist, so that it is not presented (and
    audited as a failed attempt) again."""
    if getattr(request.state, "web_timed_out", False) or getattr(request.state, "web_stale_cookie", False):
        clear_cookie(request, response)


async def session_of(request: Request) -> WebSession | None:
    """This request's session (loaded once per request), or None."""
    if not hasattr(request.state, "web_session"):
        cookie = request.cookies.get(COOKIE)
        found = await store(request).load(cookie)
        if found is not None and found.ended:
            from app.web.audit import audit_sign_out

            await audit_sign_out(request, found, TIMED_OUT)
            request.state.web_timed_out = found.signed_in
            request.state.web_stale_cookie = True
            found = None
        elif found is None and cookie:  # a cookie naming no session: a failed attempt, audited once
            from app.web.audit import audit_unknown_session

            await audit_unknown_session(request)
            request.state.web_stale_cookie = True  # cleared with the answer, so the next request is not
        request.state.web_session = found
    result: WebSession | None = request.state.web_session
    return result


def principal_of(request: Request, session: WebSession) -> Principal:
    assert session.claims is not None
    return Principal.from_claims(session.claims, base=request.app.state.ctx.settings.fhir_base)


async def current_session(request: Request) -> WebSession:
    """The signed-in session, or SignInRequired (answered by a redirect to the sign-in page)."""
    found = await session_of(request)
    if found is None or not found.signed_in:
        raise SignInRequired()
    return found


async def current_user(request: Request) -> Principal:
    """FastAPI dependency: the signed-in user's Principal (role, organisation, practitioner, care
    setting), decided and audited by the same policy as the API; not signed in: to the sign-in page."""
    return principal_of(request, await current_session(request))


async def form_session(request: Request) -> WebSession:
    """FastAPI dependency for every form post: the session whose CSRF token the form carries, signed in
    or not (the development sign-in posts before anyone is); anything else raises CsrfRefused (403)."""
    found = await session_of(request)
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if found is None or not isinstance(token, str) or not hmac.compare_digest(token, found.csrf):
        from app.web.audit import audit_refused_form

        await audit_refused_form(request, found)
        raise CsrfRefused()
    return found


async def signed_in_form(request: Request) -> Principal:
    """FastAPI dependency for a signed-in user's form post: CSRF checked first, then the user."""
    found = await form_session(request)
    if not found.signed_in:
        raise SignInRequired()
    return principal_of(request, found)
