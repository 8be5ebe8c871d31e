"""Errors as data: every failure a client can cause is a `FhirError`, rendered by ONE handler
as an OperationOutcome (https://hl7.org/fhir/R4/http.html#summary, /operationoutcome.html).

    FhirError                      (status, issue code)
    ├── BadRequest                 400 invalid / structure / value / required
    ├── NotAuthenticated           401 login
    ├── Forbidden                  403 forbidden
    ├── NotFound                   404 not-found
    ├── MethodNotAllowed           405 not-supported
    ├── NotAcceptable              406 not-supported
    ├── Conflict                   409 conflict / duplicate
    ├── Gone                       410 deleted
    ├── PreconditionFailed         412 conflict / multiple-matches
    ├── PayloadTooLarge            413 too-costly
    ├── UnsupportedMediaType       415 not-supported
    ├── Unprocessable              422 processing / business-rule / invariant / code-invalid
    ├── ServerWriteInvalid         500 exception (a resource the server wrote failed validation: our bug)
    └── ServiceUnavailable         503 transient / timeout (the database, not the request)

Each error carries one or more `Issue`s; each issue has a stable message id (`SF-xxxx`) at the start
of its diagnostics so that clients and tests can key on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()
    msg_id: str | None = None

    def to_fhir(self) -> dict[str, Any]:
        text = f"{self.msg_id}: {self.diagnostics}" if self.msg_id else self.diagnostics
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": text}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@dataclass
class FhirError(Exception):
    """Base of every client-visible error."""

    issues: list[Issue]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 500

    def __init__(
        self,
        diagnostics: str | None = None,
        *,
        msg_id: str | None = None,
        expression: str | list[str] | tuple[str, ...] | None = None,
        code: str | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if issues is None:
            expr: tuple[str, ...]
            if expression is None:
                expr = ()
            elif isinstance(expression, str):
                expr = (expression,)
            else:
                expr = tuple(expression)
            issues = [Issue(code or self.default_code, diagnostics or self.default_message, "error", expr, msg_id)]
        self.issues = issues
        self.headers = dict(headers or {})
        super().__init__(issues[0].diagnostics if issues else self.default_message)

    default_code = "exception"
    default_message = "Internal error"

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status = 400
    default_code = "invalid"
    default_message = "Bad request"


class NotAuthenticated(FhirError):
    status = 401
    default_code = "login"
    default_message = "Authentication required"


class Forbidden(FhirError):
    status = 403
    default_code = "forbidden"
    default_message = "Access denied"


class NotFound(FhirError):
    status = 404
    default_code = "not-found"
    default_message = "Not found"


class MethodNotAllowed(FhirError):
    status = 405
    default_code = "not-supported"
    default_message = "Method not allowed"


class NotAcceptable(FhirError):
    status = 406
    default_code = "not-supported"
    default_message = "Only application/fhir+json is supported"


class Conflict(FhirError):
    status = 409
    default_code = "conflict"
    default_message = "Conflict"


class Gone(FhirError):
    status = 410
    default_code = "deleted"
    default_message = "Resource deleted"


class PreconditionFailed(FhirError):
    status = 412
    default_code = "conflict"
    default_message = "Precondition failed"


class PayloadTooLarge(FhirError):
    status = 413
    default_code = "too-costly"
    default_message = "Request body too large"


class UnsupportedMediaType(FhirError):
    status = 415
    default_code = "not-supported"
    default_message = "Unsupported media type"


class Unprocessable(FhirError):
    status = 422
    default_code = "processing"
    default_message = "Unprocessable resource"


class ServerWriteInvalid(FhirError):
    """A resource the server wrote itself (a notice, a Task, an escalation...) failed its validation: a
    server bug, never the client's fault. The whole transaction rolls back."""

    status = 500
    default_code = "exception"
    default_message = "Internal server error"


class ServiceUnavailable(FhirError):
    status = 503
    default_code = "transient"
    default_message = "Service unavailable"
