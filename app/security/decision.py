"""The shape of the access policy's answer (app/security/policy.py states the rules), a `Decision`, and
the `SecurityContext` a Binary is decided by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import FhirError, Forbidden, MethodNotAllowed, NotFound


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int  # 200 when allowed, else 403 / 404 / 405
    reason: str  # for the AuditEvent outcomeDesc and the OperationOutcome
    msg_id: str | None = None
    insufficient_scope: bool = False
    expression: str | None = None  # the element refused, when one is (FHIRPath)
    allow: str | None = None  # a 405's `Allow` header: the methods the resource still accepts, when it says

    def error(self, resource_type: str, res_id: str | None = None) -> FhirError:
        """The client-facing error; a 404 is worded exactly like a missing record's."""
        if self.status == 404:
            return NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
        if self.status == 405:
            return MethodNotAllowed(self.reason, msg_id=self.msg_id,
                                    headers={"Allow": self.allow} if self.allow is not None else None)
        headers = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'} if self.insufficient_scope else None
        return Forbidden(self.reason, msg_id=self.msg_id, headers=headers, expression=self.expression)

    def enforce(self, resource_type: str, res_id: str | None = None) -> None:
        if not self.allowed:
            raise self.error(resource_type, res_id)


ALLOW = Decision(True, 200, "allowed")


@dataclass(frozen=True)
class SecurityContext:
    """The stored DocumentReference a Binary takes its access rules from (loaded by binary_policy.py)."""

    content: dict[str, Any]
    created_by_org: str | None
