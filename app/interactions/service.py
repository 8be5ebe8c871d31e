"""The FHIR RESTful interactions of one unit of work, independent of the web framework
(https://hl7.org/fhir/R4/http.html). Routes and Bundle entries both call `FhirService`, so a transaction
entry behaves exactly like the same request sent alone. Nothing here commits: `AppContext.unit_of_work`
does.

Every write runs one pipeline:
1. `begin` (preconditions.py): the access is begun, so any refusal is audited; the type, the id;
2. `_incoming`: the body validated and given its default labels: the resource as it will be stored;
3. `authorize`: the policy's one decision (app/security/policy.py, through the guard) on that resource
   and the stored record it replaces, looked up first; with no record, on the type alone. Exactly one
   per interaction: a 405 (no one may) still answers before a faulty body, a refused type before a
   missing record;
4. `_store_new` / `_store_over` / `_remove`: the interceptors' before-write rules (app/resource_rules.py
   says which), the Repository write, the after-write rules, all in the unit of work's transaction;
5. on the way out (`write`): one AuditEvent for the access, and the rules' Notes on the Outcome.
Reads (read, vread, search, history, conditional matching) are `Reads` (reads.py), made per call by `reads`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from app.errors import (
    BadRequest,
    Conflict,
    FhirError,
    Gone,
    Issue,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from app.fhir.patch import apply_patch
from app.fhir.validation import validate_resource
from app.interactions.notes import Notes
from app.interactions.outcomes import Outcome
from app.interactions.preconditions import begin, check_version, parse_version, same_content
from app.interactions.reads import Reads
from app.security.guard import Guard
from app.storage.repository import Clock, Repository
from app.stored import StoredResource

if TYPE_CHECKING:
    from app.config import Settings
    from app.fhir.search.results import SearchResult
    from app.interactions.interceptors import Interceptors
    from app.security.principal import Principal

W = TypeVar("W", bound=Callable[..., Awaitable[Outcome]])


def write(method: W) -> W:
    """A write interaction: audited once on the way out, with what it stored; its rules' Notes go on its
    Outcome and join the unit of work's (`svc.notes`) only when it succeeds, so a batch entry that fails
    leaves none behind. A write called by another (a conditional update that creates) is the outer one's."""

    @functools.wraps(method)
    async def run(self: FhirService, *args: Any, **kwargs: Any) -> Outcome:
        if self.writing is not None:
            return await method(self, *args, **kwargs)
        self.writing = notes = Notes()
        try:
            outcome: Outcome = await method(self, *args, **kwargs)
        finally:
            self.writing = None
        await self.guard.audited(outcome.stored)
        outcome.issues += notes.issues
        outcome.headers |= notes.header_values()
        self.notes.merge(notes)
        return outcome

    return run  # type: ignore[return-value]


class FhirService:
    """The interactions as `principal` asks them (None: the server's own work, neither decided nor
    audited). It is also the `WriteContext` (app/ports.py) its interceptors are given."""

    def __init__(self, repo: Repository, settings: Settings, interceptors: Interceptors, *,
                 principal: Principal | None = None, guard: Guard | None = None, scheduled: bool = False) -> None:
        self.repo = repo
        self.session = repo.session
        self.settings = settings
        self.interceptors = interceptors
        self.principal = principal
        self.guard = guard or Guard(principal, repo, server=settings.fhir_base, now=repo.clock.now)
        self.scheduled = scheduled  # `X-Access-Context: scheduled`: a silent (still audited) read
        self.notes = Notes()  # of every successful write of this unit of work
        self.writing: Notes | None = None  # of the write under way

    @property
    def reads(self) -> Reads:
        """The reads, as this service asks them. Made when asked, not kept: a `Reads` kept here would
        point back at its service, and that cycle left each request's whole unit of work (session,
        repository, guard, principal) for the cycle collector instead of freeing it when the request ends."""
        return Reads(self, self.interceptors)

    # -- the WriteContext a rule is given ------------------------------------------------------
    def note(self) -> Notes:
        """Where a rule of the write under way puts what it has to tell (Notes)."""
        return self.writing if self.writing is not None else self.notes

    @property
    def clock(self) -> Clock:
        return self.repo.clock

    @property
    def base(self) -> str:
        """The FHIR base URL, against which references are resolved."""
        return self.settings.fhir_base

    @property
    def org(self) -> str | None:
        """The organisation of the writer (`created_by_org`), when a user or client is writing."""
        return self.principal.org if self.principal is not None else None

    # -- reads (reads.py) ----------------------------------------------------------------------
    async def read(self, resource_type: str, res_id: str) -> StoredResource:
        return await self.reads.read(resource_type, res_id)

    async def vread(self, resource_type: str, res_id: str, version: str) -> StoredResource:
        return await self.reads.vread(resource_type, res_id, version)

    async def search(self, resource_type: str, query: list[tuple[str, str]], *, strict: bool = False) -> dict[str, Any]:
        return await self.reads.search(resource_type, query, strict=strict)

    async def search_result(
        self, resource_type: str, query: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[dict[str, Any], SearchResult]:
        return await self.reads.search_result(resource_type, query, strict=strict)

    async def searched(
        self, resource_type: str, query: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[SearchResult, list[Issue]]:
        return await self.reads.searched(resource_type, query, strict=strict)

    async def history(
        self, resource_type: str | None, res_id: str | None, query: list[tuple[str, str]]
    ) -> dict[str, Any]:
        return await self.reads.history(resource_type, res_id, query)

    async def match_one(
        self, resource_type: str, query: list[tuple[str, str]], what: str, *, for_write: bool = False
    ) -> StoredResource | None:
        return await self.reads.match_one(resource_type, query, what, for_write=for_write)

    async def resolve_reference(self, ref: str) -> str:
        return await self.reads.resolve_reference(ref)

    # -- the steps of a write ------------------------------------------------------------------
    async def _incoming(self, interaction: str, resource_type: str, body: Any, res_id: str | None = None, *,
                        url_id: str | None = None) -> dict[str, Any]:
        """Begin the write and make its body the resource as it will be stored: validated (`url_id`: an
        update's, whose body must carry that id) and given its default labels."""
        begin(self.guard, interaction, resource_type, res_id)
        try:
            validate_resource(resource_type, body, url_id=url_id, require_id=url_id is not None)
            return self.guard.labels(body)
        except FhirError as fault:
            await self.authorize(interaction, resource_type, res_id=res_id, fault=fault)
            raise

    async def authorize(self, interaction: str, resource_type: str, *, new: dict[str, Any] | None = None,
                        stored: StoredResource | None = None, res_id: str | None = None, creates: bool = False,
                        criteria: bool = False, fault: FhirError | None = None) -> None:
        """The policy's one decision on this interaction (`Guard.authorize`, app/security/policy.py): on `new`,
        the resource as it will be stored, and `stored`, the record it reads, changes or deletes; neither: on
        the type alone (no record was found: a refused type answers before the missing record). `creates`: an
        update that creates (`stored` a deleted record it brings back); `criteria`: a conditional write's;
        `fault`: what is wrong with the request, which answers unless no one may perform the interaction."""
        await self.guard.authorize(interaction, resource_type, stored, new=new, res_id=res_id, creates=creates,
                                   criteria=criteria, fault=fault)

    async def _matched(self, interaction: str, resource_type: str, query: list[tuple[str, str]],
                       what: str) -> StoredResource | None:
        """The one record conditional criteria select for a write, locked, searched as the principal may;
        criteria that cannot select answer once the policy has allowed the type."""
        try:
            return await self.reads.match_one(resource_type, query, what, for_write=True)
        except FhirError:
            await self.authorize(interaction, resource_type, criteria=interaction != "delete")
            raise

    # -- writes --------------------------------------------------------------------------------
    @write
    async def create(
        self,
        resource_type: str,
        body: Any,
        *,
        if_none_exist: list[tuple[str, str]] | None = None,
        assigned_id: str | None = None,
    ) -> Outcome:
        """`assigned_id`: the id a transaction already chose for this entry's `urn:uuid` fullUrl."""
        body = await self._incoming("create", resource_type, body)
        await self.authorize("create", resource_type, new=body)
        if if_none_exist is not None:  # present but empty is an error (never "match all"), not a plain create
            existing = await self.reads.match_one(resource_type, if_none_exist, "create")
            if existing is not None:
                return Outcome(200, existing)
        content = {k: v for k, v in body.items() if k != "id"}  # R4: the server ignores a client id on create
        return Outcome(201, await self._store_new(resource_type, content, res_id=assigned_id))

    @write
    async def update(
        self, resource_type: str, res_id: str, body: Any, *, if_match: str | None = None
    ) -> Outcome:
        body = await self._incoming("update", resource_type, body, res_id, url_id=res_id)
        return await self._put(resource_type, res_id, body, if_match)

    async def _put(self, resource_type: str, res_id: str, body: dict[str, Any], if_match: str | None, *,
                   criteria: bool = False) -> Outcome:
        try:
            expected = parse_version(if_match)
        except FhirError as fault:
            await self.authorize("update", resource_type, res_id=res_id, fault=fault)
            raise
        current = await self.repo.get_for_write(resource_type, res_id)
        await self.authorize("update", resource_type, new=body, stored=current, res_id=res_id,
                             creates=current is None or current.deleted, criteria=criteria)
        if current is None:
            if expected is not None:
                raise PreconditionFailed(
                    f"{resource_type}/{res_id} does not exist, so If-Match cannot match", msg_id="SF-0413"
                )
            return Outcome(201, await self._store_new(resource_type, body, res_id=res_id, method="PUT"))
        return await self._write_over(current, body, expected)

    @write
    async def conditional_update(
        self, resource_type: str, query: list[tuple[str, str]], body: Any, *, if_match: str | None = None
    ) -> Outcome:
        body = await self._incoming("update", resource_type, body)
        current = await self._matched("update", resource_type, query, "update")
        if current is None:  # R4: no match -> create, with the body's id if it has one
            res_id = body.get("id")
            if res_id:
                existing = await self.repo.get(resource_type, res_id)
                if existing is not None and not existing.deleted:  # never overwrite what the criteria missed
                    await self.authorize("update", resource_type, res_id=res_id, criteria=True)
                    raise Conflict(
                        f"{resource_type}/{res_id} exists but does not match the conditional update criteria",
                        msg_id="SF-0414", code="duplicate", expression=f"{resource_type}.id",
                    )
                begin(self.guard, "update", resource_type, res_id)
                return await self._put(resource_type, res_id, body, if_match, criteria=True)
            await self.authorize("update", resource_type, new=body, creates=True, criteria=True)
            return Outcome(201, await self._store_new(resource_type, body, method="PUT"))
        await self.authorize("update", resource_type, new=body, stored=current, criteria=True)
        if body.get("id") not in (None, current.id):
            raise BadRequest(
                f"Resource id '{body.get('id')}' does not match the matched resource {current.id}",
                msg_id="SF-0103", expression=f"{resource_type}.id",
            )
        return await self._write_over(current, {**body, "id": current.id}, parse_version(if_match))

    @write
    async def patch(
        self, resource_type: str, res_id: str, patch_body: Any, content_type: str, *, if_match: str | None = None
    ) -> Outcome:
        begin(self.guard, "patch", resource_type, res_id)
        current = await self.repo.get_for_write(resource_type, res_id)
        if current is None or current.deleted:  # the policy on the type first: a refused type reveals nothing
            await self.authorize("patch", resource_type, res_id=res_id)
            if current is None:
                raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
            raise Gone(f"{resource_type}/{res_id} was deleted", msg_id="SF-0302")
        return await self._patch(current, patch_body, content_type, if_match)

    @write
    async def conditional_patch(
        self, resource_type: str, query: list[tuple[str, str]], patch_body: Any, content_type: str,
        *, if_match: str | None = None,
    ) -> Outcome:
        """`PATCH [type]?criteria` (fhirpy's SearchSet.patch): exactly one match is patched; none 404
        and several 412, as HAPI answers."""
        begin(self.guard, "patch", resource_type)
        current = await self._matched("patch", resource_type, query, "patch")
        if current is None:
            await self.authorize("patch", resource_type, criteria=True)
            raise NotFound("The conditional patch criteria match no resource", msg_id="SF-0304")
        return await self._patch(current, patch_body, content_type, if_match, criteria=True)

    async def _patch(
        self, current: StoredResource, patch_body: Any, content_type: str, if_match: str | None, *,
        criteria: bool = False,
    ) -> Outcome:
        """The patched resource is checked, labelled and authorised exactly like the same body in a PUT. A
        patch that cannot apply is judged as an unchanged update: a record the writer may not change answers
        404 (or 403) before a bad patch's 400 or a stale If-Match's 412 could tell it exists."""
        rtype, res_id = current.resource_type, current.id
        try:
            check_version(current, parse_version(if_match))
            patched = apply_patch(current.content, patch_body, content_type)
            if not isinstance(patched, dict):
                raise Unprocessable("The patch must leave a JSON object", msg_id="SF-0121")
            if patched.get("id") != res_id or patched.get("resourceType") != rtype:
                raise Unprocessable("A patch may not change resourceType or id", msg_id="SF-0122",
                                    expression=f"{rtype}.id")
            validate_resource(rtype, patched, url_id=res_id, require_id=True)
            patched = self.guard.labels(patched)
        except FhirError:
            await self.authorize("patch", rtype, new=current.content, stored=current, criteria=criteria)
            raise
        await self.authorize("patch", rtype, new=patched, stored=current, criteria=criteria)
        return await self._write_over(current, patched, None)

    async def _write_over(self, current: StoredResource, body: dict[str, Any], expected: int | None) -> Outcome:
        check_version(current, expected)
        if current.deleted:  # an update brings a deleted resource back (https://hl7.org/fhir/R4/http.html#delete)
            return Outcome(201, await self._store_over(current, body))
        if same_content(body, current.content):
            return Outcome(200, current)  # as HAPI: identical content makes no new version
        return Outcome(200, await self._store_over(current, body))

    @write
    async def delete(self, resource_type: str, res_id: str, *, if_match: str | None = None) -> Outcome:
        begin(self.guard, "delete", resource_type, res_id)
        current = await self.repo.get_for_write(resource_type, res_id)
        await self.authorize("delete", resource_type, stored=current, res_id=res_id)
        if current is None:
            raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
        check_version(current, parse_version(if_match))
        if current.deleted:  # deleting again changes nothing (https://hl7.org/fhir/R4/http.html#delete)
            return Outcome(204, current)
        return Outcome(204, await self._remove(current))

    @write
    async def conditional_delete(self, resource_type: str, query: list[tuple[str, str]]) -> Outcome:
        begin(self.guard, "delete", resource_type)
        # R4: no match is an ordinary delete of nothing (204); several are 412 (conditionalDelete "single")
        current = await self._matched("delete", resource_type, query, "delete")
        await self.authorize("delete", resource_type, stored=current)
        if current is None:
            return Outcome(204)
        return Outcome(204, await self._remove(current))

    # -- the three writes, with the interceptors' rules around them -----------------------------
    async def _store_new(
        self, resource_type: str, content: dict[str, Any], *, res_id: str | None = None, method: str = "POST"
    ) -> StoredResource:
        scratch: dict[str, Any] = {}
        content = await self.interceptors.run_before_write(self, resource_type, content, None, scratch)
        stored = await self.repo.create(resource_type, content, res_id=res_id, method=method, org=self.org,
                                        validated=True)
        await self.interceptors.run_after_write(self, stored, None, scratch)
        return stored

    async def _store_over(self, current: StoredResource, content: dict[str, Any]) -> StoredResource:
        scratch: dict[str, Any] = {}
        content = await self.interceptors.run_before_write(self, current.resource_type, content, current, scratch)
        stored = await self.repo.update(current, content, validated=True)
        await self.interceptors.run_after_write(self, stored, current, scratch)
        return stored

    async def _remove(self, current: StoredResource) -> StoredResource:
        await self.interceptors.run_before_delete(self, current)
        return await self.repo.delete(current)
