"""The read side of the FHIR RESTful interactions (https://hl7.org/fhir/R4/http.html): read, vread,
search, history and the matching behind conditional interactions. `FhirService` answers its reads
through a `Reads` over its own unit of work (made when asked, not kept), so a transaction entry and a
plain request share one code path; every access is decided once by the access guard (`Guard.authorize`,
on the record as stored, looked up first, or on the type alone when there is none) and audited once,
and what a user was shown goes through the after-read interceptors (access notifications).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from app.errors import BadRequest, FhirError, Gone, Issue, NotFound, PreconditionFailed
from app.fhir import bundles
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.fhir.search.params import RESULT_PARAMS, SearchRequest, parse_date, parse_search
from app.fhir.search.results import SearchResult
from app.interactions.preconditions import begin, check_type, conditional_criteria
from app.search.executor import run_search
from app.security import audit_search
from app.security.guard import search_patients
from app.security.labels import withheld_issue
from app.security.search_scope import withholds
from app.storage.tables import resource as resource_table
from app.stored import StoredResource, VersionRecord

if TYPE_CHECKING:
    from app.interactions.interceptors import Interceptors
    from app.ports import WriteContext


class Reads:
    """The reads of one unit of work, as `ctx` (the service that owns them) is asking."""

    def __init__(self, ctx: WriteContext, interceptors: Interceptors) -> None:
        self.ctx = ctx
        self.interceptors = interceptors

    # -- read --------------------------------------------------------------------------------
    async def read(self, resource_type: str, res_id: str) -> StoredResource:
        begin(self.ctx.guard, "read", resource_type, res_id)
        current = await self.stored(resource_type, res_id)
        # the one decision, on the record as stored: a refused type answers 403 before a missing record's 404,
        # and a deleted record the reader may not see answers 404 like any other, not 410
        await self.ctx.guard.authorize("read", resource_type, current, res_id=res_id)
        if current is None:
            raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
        if current.deleted:
            raise Gone(
                f"{resource_type}/{res_id} was deleted (version {current.version_id})",
                msg_id="SF-0302",
                headers={"ETag": current.etag},
            )
        await self.ctx.guard.audited(current)
        await self.interceptors.run_after_read(self.ctx, [current])
        return current

    async def vread(self, resource_type: str, res_id: str, version: str) -> StoredResource:
        begin(self.ctx.guard, "vread", resource_type, res_id)
        found = await self._version(resource_type, res_id, version)
        stored = found if isinstance(found, StoredResource) else None
        await self.ctx.guard.authorize("vread", resource_type, stored, res_id=res_id)
        if isinstance(found, FhirError):
            raise found
        await self.ctx.guard.audited(found)
        return found

    async def _version(self, resource_type: str, res_id: str, version: str) -> StoredResource | FhirError:
        """The version as stored (with its resource's writer), or why there is none to show."""
        if not (version.isascii() and version.isdigit()) or len(version) > 9:  # beyond the int column: unknown
            return NotFound(f"Version '{version}' of {resource_type}/{res_id} is not known", msg_id="SF-0303")
        if resource_type == "AuditEvent":  # kept in the audit trail, one version each
            event = await audit_search.get(self.ctx.session, res_id) if int(version) == 1 else None
            rec = (VersionRecord(event.resource_type, event.id, 1, event.last_updated, "POST", event.content)
                   if event else None)
        else:
            rec = await self.ctx.repo.get_version(resource_type, res_id, int(version))
        if rec is None:
            return NotFound(f"Version {version} of {resource_type}/{res_id} is not known", msg_id="SF-0303")
        if rec.content is None:
            return Gone(f"Version {version} of {resource_type}/{res_id} is a deletion", msg_id="SF-0302")
        current = await self.stored(resource_type, res_id)
        org = current.created_by_org if current else None
        stored = StoredResource(0, rec.resource_type, rec.id, rec.version_id, rec.last_updated, False, rec.content, org)
        return stored

    async def stored(self, resource_type: str, res_id: str) -> StoredResource | None:
        """The current record; an AuditEvent from the audit trail's own table."""
        if resource_type == "AuditEvent":
            return await audit_search.get(self.ctx.session, res_id)
        return await self.ctx.repo.get(resource_type, res_id)

    # -- search ------------------------------------------------------------------------------
    def parse(self, resource_type: str, query: list[tuple[str, str]], *, strict: bool) -> SearchRequest:
        check_type(resource_type)
        req = parse_search(
            resource_type,
            query,
            base=self.ctx.settings.fhir_base,
            default_count=self.ctx.settings.default_count,
            max_count=self.ctx.settings.max_count,
            limits=self.ctx.settings.search_limits,
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
        return (await self.search_result(resource_type, query, strict=strict))[0]

    async def search_result(
        self, resource_type: str, query: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[dict[str, Any], SearchResult]:
        """The searchset Bundle and the result it shows (the matches and included records)."""
        result, issues = await self.searched(resource_type, query, strict=strict)
        bundle = bundles.searchset(result, self.ctx.settings.fhir_base, now=self.ctx.guard.now(), extra_issues=issues)
        return bundle, result

    async def searched(
        self, resource_type: str, query: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[SearchResult, list[Issue]]:
        """The search, decided, withheld from and audited as `search_result`'s, without its Bundle: the
        result and the issues the Bundle would carry (for a page that shows the records themselves, not
        a Bundle's entries of them)."""
        begin(self.ctx.guard, "search-type", resource_type, query=f"{resource_type}?{urlencode(query)}")
        await self.ctx.guard.authorize("search", resource_type)
        req = self.parse(resource_type, query, strict=strict)
        if resource_type == "AuditEvent":
            result = await audit_search.search(
                self.ctx.session, req, self.ctx.principal, base=self.ctx.settings.fhir_base,
                max_includes=self.ctx.settings.max_includes, restrict=self.ctx.guard.restrict())
        else:
            result = await run_search(self.ctx.session, req, max_includes=self.ctx.settings.max_includes,
                                      restrict=self.ctx.guard.restrict(),
                                      audit=audit_search.revincluded(self.ctx.session, self.ctx.principal))
        issues = [
            Issue("not-supported", f"Unknown search parameter '{u}' for {resource_type} was ignored",
                  "warning", (u,), "SF-0400")
            for u in req.unknown
        ]
        withheld = audit_search.withholds if resource_type == "AuditEvent" else withholds
        patients = search_patients(result.matches)
        if self.ctx.principal is not None and await withheld(self.ctx.session, self.ctx.principal, req, patients):
            issues.append(withheld_issue())
        shown = [*result.matches, *result.included]
        await self.ctx.guard.audited(patients=patients, shown=shown)
        await self.interceptors.run_after_read(self.ctx, [*result.matches, *result.included])
        return result, issues

    async def _match(self, resource_type: str, query: list[tuple[str, str]], what: str) -> list[StoredResource]:
        """Up to two matches for a conditional interaction. Unknown parameters are an error here, not
        ignored, and result parameters alone (`_count`...) never turn the criteria into "match all"."""
        query = conditional_criteria(query)
        if not query:
            raise BadRequest(f"A conditional {what} needs search parameters", msg_id="SF-0111")
        results = sorted({k for k, _ in query if k.split(":")[0] in RESULT_PARAMS})
        if results:
            raise BadRequest(
                f"'{results[0]}' is not a search criterion and cannot select the resource of a conditional {what}",
                msg_id="SF-0111", expression=results[0],
            )
        req = self.parse(resource_type, query, strict=True)
        req.count, req.offset, req.include, req.revinclude = 2, 0, [], []
        result = await run_search(self.ctx.session, req, restrict=self.ctx.guard.restrict())
        return result.matches

    async def match_one(
        self, resource_type: str, query: list[tuple[str, str]], what: str, *, for_write: bool = False
    ) -> StoredResource | None:
        """The one match of conditional criteria (None: no match; several: 412). `for_write`: the match
        locked for the write and read again as it is now (`Repository.get_for_write`), so conditional
        writes of one resource run one after another too (None if it was deleted meanwhile)."""
        matches = await self._match(resource_type, query, what)
        if len(matches) > 1:
            raise PreconditionFailed(
                f"The conditional {what} criteria match more than one resource", msg_id="SF-0412",
                code="multiple-matches",
            )
        if not matches or not for_write:
            return matches[0] if matches else None
        current = await self.ctx.repo.get_for_write(resource_type, matches[0].id)
        return None if current is None or current.deleted else current

    async def resolve_reference(self, ref: str) -> str:
        """A conditional reference `Type?criteria` in a Bundle (https://hl7.org/fhir/R4/http.html#trules)
        -> `Type/id` of its one match. As HAPI: no match 404, several 412."""
        rtype, _, raw_query = ref.partition("?")
        if rtype not in SUPPORTED_TYPES:
            raise BadRequest(f"Conditional reference '{ref}' names an unsupported type", msg_id="SF-0305")
        matches = await self._match(rtype, parse_qsl(raw_query, keep_blank_values=True), "reference")
        if len(matches) > 1:
            raise PreconditionFailed(
                f"Conditional reference '{ref}' matches more than one resource", msg_id="SF-0412",
                code="multiple-matches",
            )
        if not matches:
            raise NotFound(f"Conditional reference '{ref}' matches no resource", msg_id="SF-0304")
        return f"{rtype}/{matches[0].id}"

    # -- history -----------------------------------------------------------------------------
    async def history(
        self, resource_type: str | None, res_id: str | None, query: list[tuple[str, str]]
    ) -> dict[str, Any]:
        level = "history-instance" if res_id else ("history-type" if resource_type else "history-system")
        begin(self.ctx.guard, level, resource_type, res_id)
        current = await self.stored(resource_type, res_id) if resource_type and res_id else None
        # one decision: on the record (history-instance), the type, or, for the whole system, the endpoint
        await self.ctx.guard.authorize("read", resource_type, current, res_id=res_id,
                                       operation="history-system" if resource_type is None else None)
        if resource_type and res_id and current is None:
            raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
        count, offset, since, at = self.ctx.settings.default_count, 0, None, None
        for key, raw in query:
            if key == "_count":
                count = min(_int(key, raw), self.ctx.settings.max_count)
            elif key == "_offset":
                offset = _int(key, raw)
            elif key == "_since":
                since = parse_date(raw, key).low
            elif key == "_at":
                at = parse_date(raw, key).high
        restrict = self.ctx.guard.restrict()
        if resource_type == "AuditEvent":
            records, total = await audit_search.history(self.ctx.session, self.ctx.principal, res_id, since=since,
                                                        at=at, limit=count, offset=offset)
        else:
            records, total = await self.ctx.repo.history(
                resource_type, res_id, since=since, at=at, limit=count, offset=offset,
                restrict=restrict(resource_table, resource_type) if restrict else (),
            )
        await self.ctx.guard.audited(shown=[*records, current] if current is not None else records)
        path = "/".join(p for p in (resource_type, res_id) if p) + ("/" if resource_type else "") + "_history"
        return bundles.history(records, total, self.ctx.settings.fhir_base, path, query, offset, count,
                               now=self.ctx.guard.now())


def _int(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest(f"'{name}' must be a non-negative integer, not '{raw}'", msg_id="SF-0408", expression=name)
    return min(int(raw), 2**31 - 1)  # a larger offset only means "past the end"; the databases take no more
