"""The access guard of one unit of work: asks `policy` once for every interaction (`authorize`), narrows searches
with its SQL twin, applies default labels, and writes one AuditEvent per access in the same
transaction as the access. A refused or failed attempt is audited by `AppContext.unit_of_work`
in a transaction of its own, after the access's own transaction rolled back (`attempt_event`).

`principal` None means the server's own work (rules, the dispatcher): no policy, no audit.

An AuditEvent about a restricted record is itself restricted to that record's readers
(`labels.audit_restriction`): the guard notes the restricted records an access touched, shown or refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement

from app.errors import FhirError
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.security import audit_trail
from app.security.audit import audit_for, outcome_for_status, patients_of
from app.security.binary_policy import security_context
from app.security.decision import Decision
from app.security.labels import RESTRICTED, audit_restriction, default_labels, is_restricted
from app.security.policy import WITHHELD_MSG, Visibility, conflict_sight, decide
from app.security.principal import Principal
from app.security.search_scope import visible_any_type, visible_conditions
from app.storage.repository import Repository, utc_ms
from app.stored import StoredResource

Policy = Callable[..., Decision]  # the signature of `policy.decide`


class Guard:
    def __init__(
        self,
        principal: Principal | None,
        repo: Repository,
        *,
        server: str,
        now: Callable[[], datetime],
        request_id: str | None = None,
        client_address: str | None = None,
        policy: Policy = decide,
    ) -> None:
        self.principal = principal
        self.policy = policy  # `policy.decide`, or a wrapper of it the app was built with
        self.repo = repo
        self.server = server
        self.now = now
        self.request_id = request_id
        self.client_address = client_address
        self.pending: dict[str, Any] | None = None  # the access under way, until audited
        self.denied_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.principal is not None

    # -- decisions ---------------------------------------------------------------------------
    def begin(self, interaction: str, resource_type: str | None = None, res_id: str | None = None,
              query: str | None = None) -> None:
        if self.active:
            self.pending = {"interaction": interaction, "resource_type": resource_type, "res_id": res_id,
                            "query": query, "restricted": None}
            self.denied_reason = None

    async def authorize(
        self, interaction: str, resource_type: str | None, record: StoredResource | None = None, *,
        new: dict[str, Any] | None = None, res_id: str | None = None, creates: bool = False,
        criteria: bool = False, operation: str | None = None, fault: FhirError | None = None,
    ) -> None:
        """THE policy's one decision on the access under way (`policy.decide`, asked exactly once): on `new`,
        the resource as it will be stored, and `record`, the stored record it reads, changes or deletes (a
        Binary read follows its DocumentReference, binary_policy.py); neither: on the type alone, as when no
        record was found, which the caller then answers (404) only if the policy allowed the type.
        `fault`: what is wrong with the request; it answers unless no one may perform the interaction (405)."""
        if self.principal is None:
            if fault is not None:
                raise fault
            return
        context = None
        if record is not None and record.resource_type == "Binary" and interaction in ("read", "vread"):
            context = await security_context(self.repo.session, record.content, self.server)
        content = record.content if record is not None else None
        decision = self.policy(
            self.principal, interaction, resource_type, new if new is not None else content,
            current=content if new is not None else None, creates=creates, criteria=criteria, context=context,
            operation=operation,
            created_by_org=record.created_by_org if record is not None else None,
        )
        if fault is not None and decision.status != 405:
            raise fault
        if not decision.allowed:
            self.denied_reason = decision.reason
            if decision.msg_id == WITHHELD_MSG:
                self._touched(context.created_by_org if context is not None else
                              record.created_by_org if record is not None else None)
            raise decision.error(resource_type or operation or "", record.id if record is not None else res_id)

    def note_change(self, changes: list[tuple[str, str]], subscriber: str | None) -> None:
        """Details for the AuditEvent of the write under way (`audit_for` `changes`, `subscriber`)."""
        if self.pending is not None:
            self.pending["changes"] = changes
            self.pending["subscriber"] = subscriber

    def labels(self, body: dict[str, Any]) -> dict[str, Any]:
        return default_labels(self.principal, body) if self.principal is not None else body

    def sight(self, stored: StoredResource) -> Visibility:
        """How a record a server lookup found may show in what this principal is told when it blocks
        their write (a duplicate check's conflict message): `policy.conflict_sight`."""
        if self.principal is None:
            return Visibility.VISIBLE
        return conflict_sight(self.principal, stored.resource_type, stored.content, stored.created_by_org)

    def restrict(self) -> Restriction | None:
        """Conditions that keep hidden and withheld records out of a search (None: no principal)."""
        return Restriction(self.principal) if self.principal is not None else None

    # -- audit -------------------------------------------------------------------------------
    def _touched(self, *created_by_org: str | None) -> None:
        """The access under way touched a restricted record written by `created_by_org` (none given: a
        version whose writer it does not know)."""
        if self.pending is not None:
            self.pending["restricted"] = {*(self.pending["restricted"] or ()), *created_by_org}

    def _event(self, outcome: str, desc: str | None, *, resource: dict[str, Any] | None = None,
               version_id: int | None = None, patients: Iterable[str] = (),
               res_id: str | None = None) -> tuple[dict[str, Any], str | None]:
        """The AuditEvent and the organisation it is kept as written by (`labels.audit_restriction`)."""
        p = self.pending or {}
        event = audit_for(
            interaction=p.get("interaction", "operation"), principal=self.principal, recorded=self.now(),
            outcome=outcome, outcome_desc=desc, resource_type=p.get("resource_type"),
            res_id=res_id or p.get("res_id"), version_id=version_id, resource=resource, patients=patients,
            query=p.get("query"), request_id=self.request_id, client_address=self.client_address,
            server=self.server, changes=p.get("changes", ()), subscriber=p.get("subscriber"),
        )
        restricted, org = audit_restriction(self.principal, p.get("restricted"))
        if restricted:
            event["meta"] = {"security": [dict(RESTRICTED)]}
        return event, org

    async def audited(self, stored: StoredResource | None = None, *, patients: Iterable[str] = (),
                      shown: Iterable[Any] = ()) -> None:
        """Record the successful access under way (one AuditEvent per access). `shown`: the records a
        search, history or operation returned (a restricted one restricts the AuditEvent)."""
        if not self.active or self.pending is None:
            return
        for record in (stored, *shown) if stored is not None else shown:
            if not is_restricted(record.content):
                continue
            if isinstance(record, StoredResource):
                self._touched(record.created_by_org)
            else:  # a history version: its writer is the resource's, not known here
                self._touched()
        event, org = self._event(
            "0", None, resource=stored.content if stored else None,
            version_id=stored.version_id if stored else None, patients=patients,
            res_id=stored.id if stored else None,
        )
        self.pending = None
        await audit_trail.record(self.repo, event, org=org, now=utc_ms(self.now()), base=self.server)

    async def refused(self, error: FhirError) -> None:
        """Record the refused or failed access under way in this transaction: a batch entry's, whose own
        savepoint rolled back while the Bundle goes on (a whole unit of work that fails is `attempt_event`'s)."""
        attempt = self.attempt_event(error.status, error.issues[0].diagnostics if error.issues else "refused")
        self.pending = None
        if attempt is not None:
            event, org = attempt
            await audit_trail.record(self.repo, event, org=org, now=utc_ms(self.now()), base=self.server)

    def attempt_event(self, status: int, description: str) -> tuple[dict[str, Any], str | None] | None:
        """The AuditEvent of a refused or failed access and its organisation (None when nothing was under way)."""
        if not self.active or self.pending is None:
            return None
        return self._event(outcome_for_status(status), self.denied_reason or description)


class Restriction:
    """A principal's access conditions on a search: `(resource table, type or None) -> conditions`.
    They depend on the principal alone, which `asker` names (search statements are shared by it)."""

    def __init__(self, principal: Principal) -> None:
        self.asker = principal

    def __call__(self, res: Any, resource_type: str | None) -> Sequence[ColumnElement[bool]]:
        if resource_type is None:
            return (visible_any_type(self.asker, res, SUPPORTED_TYPES),)
        return visible_conditions(self.asker, resource_type, res)


def search_patients(matches: Iterable[StoredResource]) -> list[str]:
    out: dict[str, None] = {}
    for m in matches:
        for ref in patients_of(m.resource_type, m.content, m.id):
            out[ref] = None
    return list(out)
