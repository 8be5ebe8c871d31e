"""FHIR RESTful interactions, independent of the web framework
(https://hl7.org/fhir/R4/http.html). Routes and Bundle entries both call these, so a transaction
entry behaves exactly like the same request sent alone. Nothing here commits.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from app.config import Settings
from app.errors import BadRequest, Conflict, Issue, NotFound, PreconditionFailed, Unprocessable
from app.fhir.patch import apply_patch
from app.fhir.validation import validate_resource
from app.interactions import hooks
from app.interactions.reads import ReadInteractions
from app.security.guard import Guard
from app.storage.repository import Clock, Repository, StoredResource


@dataclass
class Outcome:
    """What an interaction produced: an HTTP status, the stored resource (for ETag/Location), or a body."""

    status: int
    stored: StoredResource | None = None
    body: dict[str, Any] | None = None
    issues: list[Issue] = field(default_factory=list)  # warnings from the write's rules (Notes)
    headers: dict[str, str] = field(default_factory=dict)  # response headers the write's rules asked for


log = logging.getLogger("safeflag")


@dataclass
class Notes:
    """What the rules of a write (app/interactions/hooks.py) tell beside its result: warning `issues` (in the
    OperationOutcome of `Prefer: return=OperationOutcome` and a Bundle entry's `response.outcome`),
    response `headers` (several values of one header are listed once each, comma-separated), and
    `committed` work (log lines, metrics) run only once the unit of work has committed, with the
    app's Metrics (None outside a request)."""

    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, list[str]] = field(default_factory=dict)
    committed: list[Callable[[Any], None]] = field(default_factory=list)

    def header(self, name: str, value: str) -> None:
        values = self.headers.setdefault(name, [])
        if value not in values:
            values.append(value)

    def header_values(self) -> dict[str, str]:
        return {name: ", ".join(values) for name, values in self.headers.items()}

    def merge(self, other: Notes) -> None:
        self.issues += other.issues
        for name, values in other.headers.items():
            for value in values:
                self.header(name, value)
        self.committed += other.committed

    def run_committed(self, metrics: Any) -> None:
        for work in self.committed:
            try:
                work(metrics)
            except Exception:
                log.exception("after-commit work failed")


W = TypeVar("W", bound=Callable[..., Awaitable[Outcome]])


def noted(method: W) -> W:
    """A write interaction whose rules' Notes go on its Outcome and join the unit of work's (`svc.notes`)
    only when it succeeds, so a batch entry that fails leaves none behind. A write called by another
    (a conditional update that creates) is collected by the outer one."""

    @functools.wraps(method)
    async def run(self: FhirService, *args: Any, **kwargs: Any) -> Outcome:
        if self.writing is not None:
            return await method(self, *args, **kwargs)
        self.writing = notes = Notes()
        try:
            outcome: Outcome = await method(self, *args, **kwargs)
        finally:
            self.writing = None
        outcome.issues += notes.issues
        outcome.headers |= notes.header_values()
        self.notes.merge(notes)
        return outcome

    return run  # type: ignore[return-value]


def parse_version(raw: str | None) -> int | None:
    """`W/"3"`, `"3"` or `3` -> 3 (contract: If-Match with weak ETag or bare version)."""
    if raw is None:
        return None
    text = raw.strip()
    text = text.removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit()):  # isdigit alone takes '²', which int() refuses
        raise BadRequest(f"Invalid version '{raw}' in If-Match", msg_id="SF-0110", expression="If-Match")
    return int(text)


def conditional_query(raw: str, resource_type: str, what: str = "If-None-Exist") -> list[tuple[str, str]]:
    """`identifier=s|v`, `?identifier=s|v` or `Patient?identifier=s|v` (If-None-Exist header,
    Bundle `request.ifNoneExist`) -> query pairs; another type before the `?` is an error."""
    text = raw.strip()
    if "?" in text:
        prefix, text = text.split("?", 1)
        prefix = prefix.rstrip("/").rsplit("/", 1)[-1]
        if prefix and prefix != resource_type:
            raise BadRequest(
                f"{what} criteria '{raw}' are for {prefix}, not {resource_type}", msg_id="SF-0112", expression=what
            )
    return parse_qsl(text, keep_blank_values=True)


def check_version(current: StoredResource, expected: int | None) -> None:
    """If-Match (https://hl7.org/fhir/R4/http.html#concurrency): 412 unless it names the current version."""
    if expected is not None and expected != current.version_id:
        raise PreconditionFailed(
            f"If-Match version {expected} does not match the current version {current.version_id} "
            f"of {current.resource_type}/{current.id}",
            msg_id="SF-0413",
        )


def _comparable(content: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in content.items() if k not in ("id", "meta")}
    meta = {k: v for k, v in (content.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out


class FhirService(ReadInteractions):
    def __init__(self, repo: Repository, settings: Settings, principal: Any = None, guard: Guard | None = None) -> None:
        self.repo = repo
        self.session = repo.session
        self.settings = settings
        self.principal = principal  # app.security.principal.Principal, None for the server's own work
        self.guard = guard or Guard(principal, repo, server=settings.fhir_base, now=repo.clock.now)
        self.notes = Notes()  # of every successful write of this unit of work
        self.writing: Notes | None = None  # of the write under way

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
        return getattr(self.principal, "org", None)

    # -- writes ------------------------------------------------------------------------------
    @noted
    async def create(
        self,
        resource_type: str,
        body: Any,
        *,
        if_none_exist: list[tuple[str, str]] | None = None,
        assigned_id: str | None = None,
    ) -> Outcome:
        """`assigned_id`: the id a transaction already chose for this entry's `urn:uuid` fullUrl."""
        self.begin_access("create", resource_type, write="create")
        validate_resource(resource_type, body)
        body = self.guard.labels(body)
        self.guard.check("create", resource_type, body)
        if if_none_exist is not None:  # present but empty is an error (never "match all"), not a plain create
            existing = await self.match_one(resource_type, if_none_exist, "create")
            if existing is not None:
                await self.guard.audited(existing)
                return Outcome(200, existing)
        content = {k: v for k, v in body.items() if k != "id"}  # R4: the server ignores a client id on create
        stored = await self._store_new(resource_type, content, res_id=assigned_id)
        await self.guard.audited(stored)
        return Outcome(201, stored)

    @noted
    async def update(
        self, resource_type: str, res_id: str, body: Any, *, if_match: str | None = None
    ) -> Outcome:
        self.begin_access("update", resource_type, res_id, write="update")
        validate_resource(resource_type, body, url_id=res_id, require_id=True)
        body = self.guard.labels(body)
        expected = parse_version(if_match)
        current = await self.repo.get_for_write(resource_type, res_id)
        if current is None or current.deleted:
            self.guard.check("create", resource_type, body, res_id=res_id)
        else:
            self.guard.check("update", resource_type, body, current=current.content,
                             created_by_org=current.created_by_org, res_id=res_id)
        if current is None:
            if expected is not None:
                raise PreconditionFailed(
                    f"{resource_type}/{res_id} does not exist, so If-Match cannot match", msg_id="SF-0413"
                )
            stored = await self._store_new(resource_type, body, res_id=res_id, method="PUT")
            await self.guard.audited(stored)
            return Outcome(201, stored)
        return await self._write_over(current, body, expected)

    async def _write_over(self, current: StoredResource, body: dict[str, Any], expected: int | None) -> Outcome:
        check_version(current, expected)
        if current.deleted:  # an update brings a deleted resource back (https://hl7.org/fhir/R4/http.html#delete)
            stored = await self._store_over(current, body)
            await self.guard.audited(stored)
            return Outcome(201, stored)
        if _comparable(body) == _comparable(current.content):
            await self.guard.audited(current)
            return Outcome(200, current)  # as HAPI: identical content makes no new version
        stored = await self._store_over(current, body)
        await self.guard.audited(stored)
        return Outcome(200, stored)

    @noted
    async def conditional_update(
        self, resource_type: str, query: list[tuple[str, str]], body: Any, *, if_match: str | None = None
    ) -> Outcome:
        self.begin_access("update", resource_type, write="update")
        validate_resource(resource_type, body)
        body = self.guard.labels(body)
        self.guard.check("search", resource_type)
        current = await self.match_one(resource_type, query, "update", for_write=True)
        if current is None:  # R4: no match -> create, with the body's id if it has one
            res_id = body.get("id")
            if res_id:
                existing = await self.repo.get(resource_type, res_id)
                if existing is not None and not existing.deleted:  # never overwrite what the criteria missed
                    raise Conflict(
                        f"{resource_type}/{res_id} exists but does not match the conditional update criteria",
                        msg_id="SF-0414", code="duplicate", expression=f"{resource_type}.id",
                    )
                return await self.update(resource_type, res_id, body, if_match=if_match)
            self.guard.check("create", resource_type, body)
            stored = await self._store_new(resource_type, body, method="PUT")
            await self.guard.audited(stored)
            return Outcome(201, stored)
        self.guard.check("update", resource_type, body, current=current.content,
                         created_by_org=current.created_by_org, res_id=current.id)
        if body.get("id") not in (None, current.id):
            raise BadRequest(
                f"Resource id '{body.get('id')}' does not match the matched resource {current.id}",
                msg_id="SF-0103", expression=f"{resource_type}.id",
            )
        return await self._write_over(current, {**body, "id": current.id}, parse_version(if_match))

    @noted
    async def patch(
        self, resource_type: str, res_id: str, patch_body: Any, content_type: str, *, if_match: str | None = None
    ) -> Outcome:
        self.begin_access("patch", resource_type, res_id, write="patch")
        self.guard.check("update", resource_type, res_id=res_id)
        current = await self._existing(resource_type, res_id, for_write=True)
        return await self._patch(current, patch_body, content_type, parse_version(if_match))

    @noted
    async def conditional_patch(
        self, resource_type: str, query: list[tuple[str, str]], patch_body: Any, content_type: str,
        *, if_match: str | None = None,
    ) -> Outcome:
        """`PATCH [type]?criteria` (fhirpy's SearchSet.patch): exactly one match is patched; none 404
        and several 412, as HAPI answers."""
        self.begin_access("patch", resource_type, write="patch")
        self.guard.check("search", resource_type)
        current = await self.match_one(resource_type, query, "patch", for_write=True)
        if current is None:
            raise NotFound("The conditional patch criteria match no resource", msg_id="SF-0304")
        return await self._patch(current, patch_body, content_type, parse_version(if_match))

    async def _patch(
        self, current: StoredResource, patch_body: Any, content_type: str, expected: int | None
    ) -> Outcome:
        rtype, res_id = current.resource_type, current.id
        # first as an unchanged update: a record the writer may not change answers 404 (or 403) before a
        # bad patch's 400 or a stale If-Match's 412 could tell it exists
        self.guard.check("patch", rtype, current.content, current=current.content,
                         created_by_org=current.created_by_org, res_id=res_id)
        check_version(current, expected)
        patched = apply_patch(current.content, patch_body, content_type)
        if not isinstance(patched, dict):
            raise Unprocessable("The patch must leave a JSON object", msg_id="SF-0121")
        if patched.get("id") != res_id or patched.get("resourceType") != rtype:
            raise Unprocessable("A patch may not change resourceType or id", msg_id="SF-0122", expression=f"{rtype}.id")
        # the patched resource is checked, labelled and authorised exactly like the same body in a PUT
        validate_resource(rtype, patched, url_id=res_id, require_id=True)
        patched = self.guard.labels(patched)
        self.guard.check("patch", rtype, patched, current=current.content, created_by_org=current.created_by_org,
                         res_id=res_id)
        return await self._write_over(current, patched, None)

    async def delete(self, resource_type: str, res_id: str, *, if_match: str | None = None) -> Outcome:
        self.begin_access("delete", resource_type, res_id, write="delete")
        self.guard.check("delete", resource_type, res_id=res_id)
        current = await self.repo.get_for_write(resource_type, res_id)
        if current is None:
            raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
        self.guard.check("delete", resource_type, current.content, created_by_org=current.created_by_org,
                         res_id=res_id)
        check_version(current, parse_version(if_match))
        if current.deleted:  # deleting again changes nothing (https://hl7.org/fhir/R4/http.html#delete)
            await self.guard.audited(current)
            return Outcome(204, current)
        stored = await self._remove(current)
        await self.guard.audited(stored)
        return Outcome(204, stored)

    async def conditional_delete(self, resource_type: str, query: list[tuple[str, str]]) -> Outcome:
        self.begin_access("delete", resource_type, write="delete")
        self.guard.check("delete", resource_type)
        # R4: no match is an ordinary delete of nothing (204); several are 412 (conditionalDelete "single")
        current = await self.match_one(resource_type, query, "delete", for_write=True)
        if current is None:
            await self.guard.audited()
            return Outcome(204)
        self.guard.check("delete", resource_type, current.content, created_by_org=current.created_by_org,
                         res_id=current.id)
        stored = await self._remove(current)
        await self.guard.audited(stored)
        return Outcome(204, stored)

    # -- the three writes, with the resource-type rules around them (app/interactions/hooks.py) -----------
    async def _store_new(
        self, resource_type: str, content: dict[str, Any], *, res_id: str | None = None, method: str = "POST"
    ) -> StoredResource:
        scratch: dict[str, Any] = {}
        content = await hooks.run_before_write(self, resource_type, content, None, scratch)
        stored = await self.repo.create(resource_type, content, res_id=res_id, method=method, org=self.org,
                                        validated=True)
        await hooks.run_after_write(self, stored, None, scratch)
        return stored

    async def _store_over(self, current: StoredResource, content: dict[str, Any]) -> StoredResource:
        scratch: dict[str, Any] = {}
        content = await hooks.run_before_write(self, current.resource_type, content, current, scratch)
        stored = await self.repo.update(current, content, validated=True)
        await hooks.run_after_write(self, stored, current, scratch)
        return stored

    async def _remove(self, current: StoredResource) -> StoredResource:
        await hooks.run_before_delete(self, current)
        return await self.repo.delete(current)
