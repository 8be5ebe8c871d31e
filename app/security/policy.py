"""Access policy: the one place that decides what may be done to which resource type.

Contract section 3: Flag, DocumentReference, Binary and AuditEvent are never deleted (405 for
everyone); AuditEvent is never created or updated through the API (405). Role x scope x label rules
arrive with the security issue and belong in this module too.
"""

from __future__ import annotations

from app.errors import MethodNotAllowed

NEVER_DELETED = frozenset({"Flag", "DocumentReference", "Binary", "AuditEvent"})
SERVER_WRITTEN = frozenset({"AuditEvent"})


def check_write_allowed(resource_type: str, interaction: str) -> None:
    """Raise 405 for interactions that no one may perform on this resource type."""
    if interaction == "delete" and resource_type in NEVER_DELETED:
        raise MethodNotAllowed(
            f"{resource_type} resources are never deleted; change their status instead",
            msg_id="SF-0405",
        )
    if interaction in ("create", "update", "patch") and resource_type in SERVER_WRITTEN:
        raise MethodNotAllowed(
            f"{resource_type} is written by the server only; it cannot be {interaction}d through the API",
            msg_id="SF-0406",
        )
