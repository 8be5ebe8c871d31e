"""FHIR RESTful interactions, independent of the web framework
(https://hl7.org/fhir/R4/http.html). Routes and Bundle entries both call these, so a transaction
entry behaves exactly like the same request sent alone. Nothing here commits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import jsonpointer

from app.config import Settings
from app.errors import BadRequest, Gone, Issue, NotFound, PreconditionFailed, Unprocessable
from app.fhir import bundles
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.fhir.search.executor import run_search
from app.fhir.search.params import SearchRequest, parse_search
from app.fhir.validation import check_id, validate_resource
from app.security.policy import check_write_allowed
from app.storage.repository import Repository, StoredResource


@dataclass
class Outcome:
    """What an interaction produced: an HTTP status, the stored resource (for ETag/Location), or a body."""

    status: int
    stored: StoredResource | None = None
    body: dict[str, Any] | None = None
    issues: list[Issue] = field(default_factory=list)
    location: bool = False


def check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(f"Resource type '{resource_type}' is not supported", msg_id="SF-0300", code="not-supported")


def parse_version(raw: str | None) -> int | None:
    """`W/"3"`, `"3"` or `3` -> 3 (contract: If-Match with weak ETag or bare version)."""
    if raw is None:
        return None
    text = raw.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise BadRequest(f"Invalid version '{raw}' in If-Match", msg_id="SF-0110", expression="If-Match")
    return int(text)


def _comparable(content: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in content.items() if k not in ("id", "meta")}
    meta = {k: v for k, v in (content.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out


class FhirService:
    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo = repo
        self.session = repo.session
        self.settings = settings

    # -- read --------------------------------------------------------------------------------
    async def read(self, resource_type: str, res_id: str) -> StoredResource:
        check_type(resource_type)
        current = await self.repo.get(resource_type, res_id)
        if current is None:
            raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
        if current.deleted:
            raise Gone(
                f"{resource_type}/{res_id} was deleted (version {current.version_id})",
                msg_id="SF-0302",
                headers={"ETag": current.etag},
            )
        return current

    async def vread(self, resource_type: str, res_id: str, version: str) -> StoredResource:
        check_type(resource_type)
        if not version.isdigit():
            raise NotFound(f"Version '{version}' of {resource_type}/{res_id} is not known", msg_id="SF-0303")
        rec = await self.repo.get_version(resource_type, res_id, int(version))
        if rec is None:
            raise NotFound(f"Version {version} of {resource_type}/{res_id} is not known", msg_id="SF-0303")
        if rec.content is None:
            raise Gone(f"Version {version} of {resource_type}/{res_id} is a deletion", msg_id="SF-0302")
        return StoredResource(0, rec.resource_type, rec.id, rec.version_id, rec.last_updated, False, rec.content)

    # -- search ------------------------------------------------------------------------------
    def parse(self, resource_type: str, query: list[tuple[str, str]], *, strict: bool) -> SearchRequest:
        check_type(resource_type)
        req = parse_search(
            resource_type,
            query,
            base=self.settings.fhir_base,
            default_count=self.settings.default_count,
            max_count=self.settings.max_count,
        )
        if req.unknown and strict:
            raise BadRequest(
                issues=[
                    Issue("not-supported", f"Unknown search parameter '{u}' for {resource_type}",
                          expression=(u,), msg_id="SF-0400")
                    for u in req.unknown
                ]
            )
        return req

    async def search(self, resource_type: str, query: list[tuple[str, str]], *, strict: bool = False) -> dict[str, Any]:
        req = self.parse(resource_type, query, strict=strict)
        result = await run_search(self.session, req, max_includes=self.settings.max_includes)
        issues = [
            Issue("not-supported", f"Unknown search parameter '{u}' for {resource_type} was ignored",
                  "warning", (u,), "SF-0400")
            for u in req.unknown
        ]
        return bundles.searchset(result, self.settings.fhir_base, extra_issues=issues)

    async def _match(self, resource_type: str, query: list[tuple[str, str]], what: str) -> list[StoredResource]:
        """Matches for a conditional interaction; unknown parameters are an error here, not ignored."""
        if not query:
            raise BadRequest(f"A conditional {what} needs search parameters", msg_id="SF-0111")
        req = self.parse(resource_type, query, strict=True)
        req.count, req.offset, req.include, req.revinclude = 2, 0, [], []
        result = await run_search(self.session, req)
        return result.matches

    # -- history -----------------------------------------------------------------------------
    async def history(
        self, resource_type: str | None, res_id: str | None, query: list[tuple[str, str]]
    ) -> dict[str, Any]:
        from app.fhir.search.params import parse_date

        if resource_type is not None:
            check_type(resource_type)
        if resource_type and res_id:
            await self._existing(resource_type, res_id, allow_deleted=True)
        count, offset, since, at = self.settings.default_count, 0, None, None
        for key, raw in query:
            if key == "_count":
                count = min(_int(key, raw), self.settings.max_count)
            elif key == "_offset":
                offset = _int(key, raw)
            elif key == "_since":
                since = parse_date(raw, key).low
            elif key == "_at":
                at = parse_date(raw, key).high
        records, total = await self.repo.history(
            resource_type, res_id, since=since, at=at, limit=count, offset=offset
        )
        path = "/".join(p for p in (resource_type, res_id) if p) + ("/" if resource_type else "") + "_history"
        return bundles.history(records, total, self.settings.fhir_base, path, query, offset, count)

    # -- writes ------------------------------------------------------------------------------
    async def create(
        self, resource_type: str, body: Any, *, if_none_exist: list[tuple[str, str]] | None = None
    ) -> Outcome:
        check_type(resource_type)
        check_write_allowed(resource_type, "create")
        validate_resource(resource_type, body)
        if if_none_exist:
            matches = await self._match(resource_type, if_none_exist, "create")
            if len(matches) > 1:
                raise PreconditionFailed(
                    "The If-None-Exist criteria match more than one resource", msg_id="SF-0412",
                    code="multiple-matches",
                )
            if matches:
                return Outcome(200, matches[0], location=True)
        content = {k: v for k, v in body.items() if k != "id"}  # R4: the server ignores a client id on create
        stored = await self.repo.create(resource_type, content)
        return Outcome(201, stored, location=True)

    async def update(
        self, resource_type: str, res_id: str, body: Any, *, if_match: str | None = None
    ) -> Outcome:
        check_type(resource_type)
        check_write_allowed(resource_type, "update")
        check_id(res_id)
        validate_resource(resource_type, body, url_id=res_id, require_id=True)
        expected = parse_version(if_match)
        current = await self.repo.get(resource_type, res_id)
        if current is None:
            if expected is not None:
                raise PreconditionFailed(
                    f"{resource_type}/{res_id} does not exist, so If-Match cannot match", msg_id="SF-0413"
                )
            stored = await self.repo.create(resource_type, body, res_id=res_id, method="PUT")
            return Outcome(201, stored, location=True)
        return await self._write_over(current, body, expected)

    async def _write_over(self, current: StoredResource, body: dict[str, Any], expected: int | None) -> Outcome:
        if expected is not None and expected != current.version_id:
            raise PreconditionFailed(
                f"If-Match version {expected} does not match the current version {current.version_id} "
                f"of {current.resource_type}/{current.id}",
                msg_id="SF-0413",
            )
        if current.deleted:
            stored = await self.repo.update(current, body)
            return Outcome(201, stored, location=True)
        if _comparable(body) == _comparable(current.content):
            return Outcome(200, current)  # as HAPI: identical content makes no new version
        stored = await self.repo.update(current, body)
        return Outcome(200, stored)

    async def conditional_update(
        self, resource_type: str, query: list[tuple[str, str]], body: Any, *, if_match: str | None = None
    ) -> Outcome:
        check_type(resource_type)
        check_write_allowed(resource_type, "update")
        validate_resource(resource_type, body)
        matches = await self._match(resource_type, query, "update")
        if len(matches) > 1:
            raise PreconditionFailed(
                "The conditional update criteria match more than one resource", msg_id="SF-0412",
                code="multiple-matches",
            )
        if not matches:
            res_id = body.get("id") if isinstance(body, dict) else None
            if res_id:
                return await self.update(resource_type, res_id, body, if_match=if_match)
            stored = await self.repo.create(resource_type, body, method="PUT")
            return Outcome(201, stored, location=True)
        current = matches[0]
        if body.get("id") not in (None, current.id):
            raise BadRequest(
                f"Resource id '{body.get('id')}' does not match the matched resource {current.id}",
                msg_id="SF-0103", expression=f"{resource_type}.id",
            )
        return await self._write_over(current, {**body, "id": current.id}, parse_version(if_match))

    async def patch(
        self, resource_type: str, res_id: str, patch_body: Any, content_type: str, *, if_match: str | None = None
    ) -> Outcome:
        check_type(resource_type)
        check_write_allowed(resource_type, "patch")
        current = await self._existing(resource_type, res_id)
        expected = parse_version(if_match)
        if expected is not None and expected != current.version_id:
            raise PreconditionFailed(
                f"If-Match version {expected} does not match the current version {current.version_id} "
                f"of {resource_type}/{res_id}",
                msg_id="SF-0413",
            )
        patched = apply_patch(current.content, patch_body, content_type)
        if not isinstance(patched, dict):
            raise Unprocessable("The patch must leave a JSON object", msg_id="SF-0121")
        if patched.get("id") != res_id or patched.get("resourceType") != resource_type:
            raise Unprocessable("A patch may not change resourceType or id", msg_id="SF-0122",
                                expression=f"{resource_type}.id")
        validate_resource(resource_type, patched, url_id=res_id, require_id=True)
        return await self._write_over(current, patched, None)

    async def delete(self, resource_type: str, res_id: str) -> Outcome:
        check_type(resource_type)
        check_write_allowed(resource_type, "delete")
        current = await self.repo.get(resource_type, res_id)
        if current is None:
            raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
        if current.deleted:
            return Outcome(204, current)
        stored = await self.repo.delete(current)
        return Outcome(204, stored)

    async def conditional_delete(self, resource_type: str, query: list[tuple[str, str]]) -> Outcome:
        check_type(resource_type)
        check_write_allowed(resource_type, "delete")
        matches = await self._match(resource_type, query, "delete")
        if len(matches) > 1:
            raise PreconditionFailed(
                "The conditional delete criteria match more than one resource", msg_id="SF-0412",
                code="multiple-matches",
            )
        if not matches:
            return Outcome(204)
        return Outcome(204, await self.repo.delete(matches[0]))

    async def _existing(self, resource_type: str, res_id: str, *, allow_deleted: bool = False) -> StoredResource:
        current = await self.repo.get(resource_type, res_id)
        if current is None:
            raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
        if current.deleted and not allow_deleted:
            raise Gone(f"{resource_type}/{res_id} was deleted", msg_id="SF-0302")
        return current


def _int(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise BadRequest(f"'{name}' must be a non-negative integer, not '{raw}'", msg_id="SF-0408", expression=name)
    return int(raw)


def apply_patch(content: dict[str, Any], patch_body: Any, content_type: str) -> Any:
    """JSON Patch (RFC 6902) or JSON merge patch (RFC 7396) applied to a copy of `content`."""
    if "merge-patch" in content_type:
        if not isinstance(patch_body, dict):
            raise BadRequest("A JSON merge patch must be a JSON object", msg_id="SF-0120")
        return _merge(copy.deepcopy(content), patch_body)
    if not isinstance(patch_body, list):
        raise BadRequest("A JSON Patch must be a JSON array of operations", msg_id="SF-0120")
    try:
        patch = jsonpatch.JsonPatch(patch_body)
        return patch.apply(copy.deepcopy(content))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Unprocessable(f"JSON Patch test failed: {exc}", msg_id="SF-0123") from exc
    except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
        raise Unprocessable(f"JSON Patch cannot be applied: {exc}", msg_id="SF-0124") from exc
    except (jsonpatch.InvalidJsonPatch, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BadRequest(f"Invalid JSON Patch: {exc}", msg_id="SF-0120") from exc


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target
