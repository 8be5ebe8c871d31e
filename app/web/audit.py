"""Sign-in, sign-out and refused sign-ins, audited like every other access.

One AuditEvent each, in the shape app/security/audit.py gives every access, typed as DICOM's User
Authentication event (110114) with the Login (110122) or Logout (110123) subtype, as IHE BALP and ATNA
record them. A refused sign-in (no mapped role, a failed exchange with the provider) has outcome 4 and
names the account by the provider's issuer and subject; nothing from the ID token beyond that is kept.

Failed access attempts are audited as the API audits a refused one (outcome 4): a request whose session
cookie names no session (signed out, ended, cleared out a day after its timeout or forged: a replayed
cookie shows here) as a failed User Authentication, and a form post without its session's CSRF token as the refused operation it is,
with the signed-in user as agent. A request with no session cookie at all identifies nobody and is sent
to the sign-in page unaudited, as a request without a token at /fhir is answered 401.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from app.observability import request_id_var
from app.security import audit_trail
from app.security.audit import DCM, audit_for, clean
from app.security.principal import Principal

AUTHENTICATION = {"system": DCM, "code": "110114", "display": "User Authentication"}
LOGIN = {"system": DCM, "code": "110122", "display": "Login"}
LOGOUT = {"system": DCM, "code": "110123", "display": "Logout"}


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _store(request: Request, event: dict[str, Any], org: str | None) -> None:
    ctx = request.app.state.ctx
    async with ctx.unit_of_work() as svc:
        await audit_trail.record(svc.repo, event, org=org, now=ctx.clock.now(), base=ctx.settings.fhir_base)


def _event(request: Request, principal: Principal | None, subtype: dict[str, str], outcome: str,
           desc: str | None, *, client: bool = True) -> dict[str, Any]:
    ctx = request.app.state.ctx
    event = audit_for(interaction="operation", principal=principal, recorded=ctx.clock.now(), outcome=outcome,
                      outcome_desc=desc, request_id=request_id_var.get(),
                      client_address=_client(request) if client else None, server=ctx.settings.fhir_base)
    event["type"] = AUTHENTICATION
    event["subtype"] = [subtype]
    return event


async def audit_sign_in(request: Request, principal: Principal) -> None:
    await _store(request, _event(request, principal, LOGIN, "0", "signed in to the web app"), principal.org)


async def audit_refused_sign_in(request: Request, issuer: str, sub: str | None, reason: str) -> None:
    event = _event(request, None, LOGIN, "4", reason)
    if sub:
        event["agent"][0]["who"] = {"identifier": {"system": clean(issuer), "value": clean(sub)}}
        event["agent"][0]["altId"] = clean(sub)
    await _store(request, event, None)


async def audit_sign_out(request: Request, session: Any, why: str = "signed out", *, client: bool = True) -> None:
    """A signed-in session's end (sign-out or idle timeout); a sign-in that never finished is not audited.
    `client=False` for a session swept by another person's request: no client address is the ended one's."""
    if not session.claims:
        return
    from app.web.session import principal_of

    principal = principal_of(request, session)
    await _store(request, _event(request, principal, LOGOUT, "0", why, client=client), principal.org)


def _attempt(request: Request) -> str:
    return clean(f"{request.method} {request.url.path}")[:200]


async def audit_unknown_session(request: Request) -> None:
    """A request with a session cookie that names no session: a failed authentication (outcome 4)."""
    await _store(request, _event(request, None, LOGIN, "4",
                                 f"no session for the session cookie presented: {_attempt(request)}"), None)


async def audit_refused_form(request: Request, session: Any) -> None:
    """A form post refused for want of its session's CSRF token (outcome 4), by the session's user if any."""
    from app.web.session import principal_of

    principal = principal_of(request, session) if session is not None and session.claims else None
    ctx = request.app.state.ctx
    event = audit_for(interaction="operation", principal=principal, recorded=ctx.clock.now(), outcome="4",
                      outcome_desc=f"form refused: it did not carry the session's CSRF token: {_attempt(request)}",
                      request_id=request_id_var.get(), client_address=_client(request), server=ctx.settings.fhir_base)
    await _store(request, event, principal.org if principal else None)
