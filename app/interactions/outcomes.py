"""How the result of an interaction is answered: status, ETag, Location, Last-Modified and the body
that `Prefer: return=` asks for (https://hl7.org/fhir/R4/http.html#ops).

One function serves both an HTTP response (`app/api/responses.py`) and a batch/transaction
`Bundle.entry.response` (https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.response), so an
entry is answered exactly as the same request sent alone. Warnings raised by a write's rules (an ED
notice routed to no one) join the OperationOutcome of `return=OperationOutcome`, and are a Bundle
entry's `response.outcome` whatever the return mode; the headers they ask for go on the HTTP response.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from app.errors import Issue, operation_outcome
from app.stored import StoredResource


@dataclass
class Outcome:
    """What a write interaction produced: an HTTP status, the stored resource (for ETag/Location), and what
    the write's rules told beside it (`Notes`)."""

    status: int
    stored: StoredResource | None = None
    issues: list[Issue] = field(default_factory=list)  # warnings from the write's rules
    headers: dict[str, str] = field(default_factory=dict)  # response headers the write's rules asked for

# Fixed here because Python 3.13 renamed 413 and 422; the wire text must not drift with the interpreter.
_PHRASES = {413: "Request Entity Too Large", 422: "Unprocessable Entity"}


def status_line(status: int) -> str:
    """`201` -> `201 Created`, the form Bundle.entry.response.status uses."""
    return f"{status} {_PHRASES.get(status) or HTTPStatus(status).phrase}"


def location(fhir_base: str, stored: StoredResource) -> str:
    return f"{fhir_base}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"


def not_modified(stored: StoredResource, if_none_match: str | None, since: datetime | None = None) -> bool:
    """A conditional read (https://hl7.org/fhir/R4/http.html#cread) that may be answered 304.

    If-None-Match: `W/"n"`, `"n"`, bare `n` (fhirpy sends it) or `*`. `since` (If-Modified-Since, or a
    Bundle entry's `request.ifModifiedSince`), the last instant the given time covers: 304 when the
    resource's lastUpdated is not after it. As RFC 9110 section 13.2.2 orders them, `since` is not looked
    at when If-None-Match is sent."""
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in if_none_match.split(",")}
        return str(stored.version_id) in tags or "*" in tags
    return since is not None and stored.last_updated.replace(tzinfo=UTC) <= since


def http_date_value(text: str | None) -> datetime | None:
    """The end of the second an HTTP date names (RFC 9110 section 5.6.7, the three forms; a Last-Modified
    is lastUpdated to the second), aware UTC; None for none or one that is not a valid HTTP date
    (If-Modified-Since is then ignored, RFC 9110 section 13.1.3)."""
    if text is None:
        return None
    try:
        found = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    found = found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)
    return found.replace(microsecond=999_999)


@dataclass(frozen=True)
class Answer:
    status: int
    stored: StoredResource | None  # gives ETag and Last-Modified
    location: str | None
    resource: dict[str, Any] | None = None  # Prefer: return=representation
    outcome: dict[str, Any] | None = None  # Prefer: return=OperationOutcome
    warnings: tuple[Issue, ...] = ()  # from the write's rules: a Bundle entry's `response.outcome` carries them
    headers: dict[str, str] | None = None  # response headers the write's rules asked for


def answer_write(outcome: Outcome, fhir_base: str, return_mode: str | None) -> Answer:
    """The answer to create/update/patch/delete; an unknown `return=` value means representation."""
    stored = outcome.stored
    if outcome.status == 204 or stored is None:
        return Answer(204, stored, None)
    # every write that leaves a version names it: HAPI's client takes an update's id from the header
    loc = location(fhir_base, stored)
    told = Answer(outcome.status, stored, loc, warnings=tuple(outcome.issues), headers=outcome.headers or None)
    if return_mode == "minimal":
        return told
    if return_mode == "OperationOutcome":
        verb = "created" if outcome.status == 201 else "processed"
        done = Issue("informational", f"{stored.resource_type}/{stored.id} {verb}", "information", msg_id="SF-0001")
        return replace(told, outcome=operation_outcome([done, *outcome.issues]))
    return replace(told, resource=stored.content)


def answer_read(stored: StoredResource, if_none_match: str | None, since: datetime | None = None) -> Answer:
    if not_modified(stored, if_none_match, since):
        return Answer(304, stored, None)
    return Answer(200, stored, None, resource=stored.content)
