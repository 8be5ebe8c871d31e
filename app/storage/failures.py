"""Database failures that are not the client's doing, as the FHIR errors a client can act on
(https://hl7.org/fhir/R4/http.html#summary; issue types https://hl7.org/fhir/R4/valueset-issue-type.html).

- The database cannot be reached, is shutting down or starting up, a pooled connection died with it,
  or every pooled connection is busy past the pool's wait: 503 `transient` with `Retry-After`. The pool
  reconnects by itself once the database is back; nothing needs a restart.
- A statement ran past `SAFEFLAG_STATEMENT_TIMEOUT_SECONDS` (PostgreSQL's `statement_timeout`): 503
  `timeout` with `Retry-After`. The search bounds (app/fhir/search/limits.py) keep every allowed search
  far below it, so a timeout means an overloaded or unanalysed database: worth a retry, not a 400.
- The database has no SafeFlag schema, or an older one (a server started with `--no-migrate`, or a new
  release before `safeflag migrate`): 503 `transient` naming the command that fixes it. `/readyz` says
  the same.
- SQLite refusing a statement as too large (expression depth, compound SELECT, variables): 400
  `too-costly`, as the search bounds answer; a locked database: 503 `transient`.

Anything else stays an unexpected error (500).
"""

from __future__ import annotations

from sqlalchemy import exc as sa

from app.errors import BadRequest, FhirError, ServiceUnavailable

RETRY_AFTER_S = 5
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03")  # admin / crash shutdown, cannot connect now
_TOO_LARGE = ("too large", "too many")
_SCHEMA_STATES = ("42P01", "42703")  # undefined table, undefined column
_SCHEMA_MESSAGES = ("no such table", "no such column", "has no column named")


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def as_fhir_error(exc: BaseException) -> FhirError | None:
    """The FhirError a database failure answers with, or None when `exc` is not one of those above."""
    if isinstance(exc, FhirError):
        return None
    state = _sqlstate(exc)
    retry = {"Retry-After": str(RETRY_AFTER_S)}
    if state == "57014":
        return ServiceUnavailable("The database did not finish the request in time and it was stopped; retry "
                                  "later, or narrow the search", msg_id="SF-0961", code="timeout", headers=retry)
    message = str(getattr(exc, "orig", exc)).lower()
    if state in _SCHEMA_STATES or (isinstance(exc, sa.OperationalError) and any(t in message for t in _SCHEMA_MESSAGES)):
        return ServiceUnavailable("The database is not at this release's schema: the operator must run "
                                  "`safeflag migrate`", msg_id="SF-0963", headers=retry)
    if isinstance(exc, sa.OperationalError) and "sqlite" in type(exc.orig).__module__:
        if any(t in message for t in _TOO_LARGE):
            return BadRequest("The request is too large for the database to run; narrow it",
                              msg_id="SF-0962", code="too-costly")
        if "locked" in message or "busy" in message:
            return ServiceUnavailable("The database is busy; retry later", msg_id="SF-0960", headers=retry)
        return None
    connection_lost = isinstance(exc, sa.DBAPIError) and exc.connection_invalidated
    if (connection_lost or isinstance(exc, (ConnectionError, TimeoutError, sa.TimeoutError))
            or (state is not None and (state.startswith("08") or state in _UNAVAILABLE_STATES))):
        return ServiceUnavailable("The database is unavailable; retry later", msg_id="SF-0960", headers=retry)
    return None
