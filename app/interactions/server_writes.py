"""The resources the server writes itself (ED attendance, did-not-wait and think-family notices and
their acknowledgement Tasks, escalations, access notifications, superseded referral copies, Subscription
status changes...) meet the same profiles as the same resource sent by a client: the repository runs
`check_server_write` on every write that did not come through the API's own validation
(`Repository.create/update(..., validated=True)`), in the write's transaction.

A failure is a bug of ours, not of the request: ERROR log lines name the profile and each issue, the
transaction rolls back, and the client gets a 500 OperationOutcome (`exception`, SF-0501) carrying the
request id to quote. AuditEvents are not checked: written on every access, built by one function
(app/security/audit.py), and no profile of ours applies to them.
"""

from __future__ import annotations

import logging
from typing import Any

from app.errors import BadRequest, ServerWriteInvalid, Unprocessable
from app.fhir.profiles import profiles_for
from app.fhir.validation import CORE_PROFILE, validate_resource
from app.observability import request_id_var

log = logging.getLogger("safeflag.server_writes")
UNCHECKED = frozenset({"AuditEvent"})


def check_server_write(resource_type: str, content: dict[str, Any]) -> None:
    """Raise ServerWriteInvalid when `content` (about to be stored by the server) is not valid."""
    if resource_type in UNCHECKED:
        return
    try:
        validate_resource(resource_type, content)
    except (BadRequest, Unprocessable) as invalid:
        profiles = ", ".join(profiles_for(content) or [CORE_PROFILE + resource_type])
        what = f"{resource_type}/{content.get('id')}"
        for issue in invalid.issues:
            if issue.severity in ("error", "fatal"):
                where = ", ".join(issue.expression) or resource_type
                log.error("server-written %s fails profile %s: %s: %s (at %s)", what, profiles, issue.msg_id,
                          issue.diagnostics, where, extra={"profile": profiles, "issue": issue.msg_id,
                                                           "expression": where})
        rid = request_id_var.get()
        raise ServerWriteInvalid(
            f"Internal server error: a {resource_type} the server writes failed validation against {profiles}, "
            f"so nothing was saved; quote request id {rid or '(none)'} when reporting it",
            msg_id="SF-0501",
        ) from invalid
