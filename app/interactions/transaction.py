"""Batch and transaction Bundles at `POST [base]` (https://hl7.org/fhir/R4/http.html#transaction).

Every entry runs through the same `FhirService` interaction and the same answer rules
(`outcomes.py`) as the request sent alone.

- transaction: one database transaction, all or nothing. Entries run in the order the spec sets
  (DELETE, POST, PUT/PATCH, then GET/HEAD); `urn:uuid:` fullUrls get their ids before any write so
  that references between entries are rewritten in every resource; conditional references
  (`Patient?identifier=s|v`) resolve to their one match. The first failure answers for the whole
  Bundle with its own status and an OperationOutcome naming the entry (`Bundle.entry[n]`).
- batch: entries run in Bundle order, each in its own SAVEPOINT; a failure becomes that entry's
  response (status and outcome) and the others are kept.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import orjson

from app.errors import BadRequest, FhirError, Issue, operation_outcome
from app.fhir.patch import patch_format
from app.interactions.bundle_request import (
    KINDS,
    Entry,
    conditional_references,
    duplicate_target,
    parse_bundle,
    rewrite_references,
)
from app.interactions.outcomes import Answer, Outcome, answer_read, answer_write, status_line
from app.interactions.preconditions import conditional_criteria, conditional_query
from app.interactions.service import FhirService
from app.stored import format_instant

T = TypeVar("T")


@dataclass(frozen=True)
class Preferences:
    """The `Prefer` header of the Bundle request, applied to every entry."""

    return_mode: str | None = None  # minimal | representation | OperationOutcome
    strict: bool = False  # handling=strict


async def process(svc: FhirService, body: Any, prefs: Preferences) -> dict[str, Any]:
    """The batch-response or transaction-response Bundle; raises FhirError when a transaction fails."""
    kind, entries = parse_bundle(body, svc.settings.fhir_base, svc.settings.bundle_max_entries)
    run = _Transaction(svc, entries, prefs) if kind == "transaction" else _Batch(svc, entries, prefs)
    responses = await run.run()
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": svc.repo.new_id(), "type": KINDS[kind]}
    if responses:
        bundle["entry"] = responses
    return bundle


def at_entry(entry: Entry, err: FhirError) -> FhirError:
    """The same error (same status) with each issue pointing into the Bundle: expressions on the
    entry's resource become `Bundle.entry[n].resource...`, and `Bundle.entry[n]` always leads."""
    issues = []
    rtype = entry.resource_type or ""
    for issue in err.issues:
        exprs = [
            f"{entry.where}.resource{x[len(rtype) :]}"
            if rtype and (x == rtype or x.startswith(rtype + "."))
            else x
            for x in issue.expression
        ]
        if not any(x == entry.where or x.startswith(entry.where + ".") for x in exprs):
            exprs.insert(0, entry.where)
        text = f"{entry.where} ({entry.method} {entry.url}): {issue.diagnostics}"
        issues.append(Issue(issue.code, text, issue.severity, tuple(exprs), issue.msg_id))
    return type(err)(issues=issues)


def entry_json(answer: Answer, fhir_base: str) -> dict[str, Any]:
    """`Bundle.entry` of a response Bundle (https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.response)."""
    out: dict[str, Any] = {}
    stored = answer.stored
    if answer.resource is not None:
        if stored is not None:
            out["fullUrl"] = f"{fhir_base}/{stored.resource_type}/{stored.id}"
        out["resource"] = answer.resource
    response: dict[str, Any] = {"status": status_line(answer.status)}
    if answer.location:
        response["location"] = answer.location
    if stored is not None:
        response["etag"] = stored.etag
        response["lastModified"] = format_instant(stored.last_updated)
    if answer.outcome is not None:
        response["outcome"] = answer.outcome
    elif answer.warnings:  # "hints and warnings produced as part of processing this entry" (R4)
        response["outcome"] = operation_outcome(answer.warnings)
    out["response"] = response
    return out


def create_criteria(entry: Entry) -> list[tuple[str, str]] | None:
    """A POST entry is a conditional create by its URL's query (as the HTTP route) or `ifNoneExist`;
    None when it is a plain create."""
    criteria = conditional_criteria(entry.query)
    if not criteria and entry.if_none_exist is not None:
        return conditional_query(entry.if_none_exist, entry.resource_type or "", "ifNoneExist")
    return criteria or None


def patch_document(resource: dict[str, Any]) -> tuple[Any, str]:
    """A PATCH entry carries its patch as a Binary (contentType + base64 data); a Parameters resource
    would be FHIRPath Patch, which is not supported (415)."""
    if resource.get("resourceType") == "Parameters":
        patch_format("application/fhir+json", resource)
    data, content_type = resource.get("data"), resource.get("contentType")
    if (
        resource.get("resourceType") != "Binary"
        or not isinstance(data, str)
        or not isinstance(content_type, str)
    ):
        raise BadRequest(
            "A PATCH entry carries its patch as a Binary with contentType and base64 data",
            msg_id="SF-0630",
            expression="Binary",
        )
    try:
        document = orjson.loads(base64.b64decode(data, validate=True))
    except ValueError as exc:  # binascii.Error and orjson.JSONDecodeError are both ValueErrors
        raise BadRequest(
            f"The Binary data of a PATCH entry is not base64-encoded JSON: {exc}",
            msg_id="SF-0630",
            expression="Binary.data",
        ) from exc
    return document, content_type.split(";")[0].strip().lower()


class _Run:
    def __init__(self, svc: FhirService, entries: list[Entry], prefs: Preferences) -> None:
        self.svc = svc
        self.entries = entries
        self.prefs = prefs
        self.base = svc.settings.fhir_base

    async def run(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def rewrite(self, entry: Entry, targets: dict[str, str]) -> None:
        """Resolve the entry's conditional references, then rewrite its placeholders and those."""
        if entry.interaction not in ("create", "update") or not isinstance(entry.resource, dict):
            return
        targets = dict(targets)
        for ref in sorted(conditional_references(entry.resource) - targets.keys()):
            targets[ref] = await self.svc.resolve_reference(ref)
        unresolved: list[tuple[str, str]] = []
        entry.resource = rewrite_references(entry.resource, targets, unresolved, entry.resource_type or "")
        if unresolved:
            raise BadRequest(
                issues=[
                    Issue(
                        "not-found",
                        f"Reference '{ref}' names no entry of this Bundle",
                        expression=(path,),
                        msg_id="SF-0629",
                    )
                    for path, ref in unresolved
                ]
            )

    async def execute(self, entry: Entry, assigned_id: str | None = None) -> tuple[Answer, Outcome | None]:
        """The entry's interaction, exactly as the HTTP route would run it."""
        svc, rtype, query = self.svc, entry.resource_type or "", entry.query
        match entry.interaction:
            case "read" | "vread":
                stored = await (
                    svc.vread(rtype, entry.res_id or "", entry.version or "")
                    if entry.version
                    else svc.read(rtype, entry.res_id or "")
                )
                answer = answer_read(stored, entry.if_none_match, entry.if_modified_since)
                return (replace(answer, resource=None) if entry.method == "HEAD" else answer), None
            case "search":
                bundle = await svc.search(rtype, query, strict=self.prefs.strict)
                return Answer(200, None, None, resource=None if entry.method == "HEAD" else bundle), None
            case "history":
                return Answer(
                    200, None, None, resource=await svc.history(entry.resource_type, entry.res_id, query)
                ), None
            case "create":
                outcome = await svc.create(
                    rtype,
                    entry.resource,
                    if_none_exist=create_criteria(entry),
                    assigned_id=assigned_id,
                )
            case "update" if entry.res_id:
                outcome = await svc.update(rtype, entry.res_id, entry.resource, if_match=entry.if_match)
            case "update":
                outcome = await svc.conditional_update(rtype, query, entry.resource, if_match=entry.if_match)
            case "patch":
                document, content_type = patch_document(entry.resource)
                if entry.res_id:
                    outcome = await svc.patch(
                        rtype, entry.res_id, document, content_type, if_match=entry.if_match
                    )
                else:
                    outcome = await svc.conditional_patch(
                        rtype, query, document, content_type, if_match=entry.if_match
                    )
            case _:  # delete
                outcome = await (
                    svc.delete(rtype, entry.res_id, if_match=entry.if_match)
                    if entry.res_id
                    else svc.conditional_delete(rtype, query)
                )
        return answer_write(outcome, self.base, self.prefs.return_mode), outcome


class _Batch(_Run):
    async def run(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.entries:
            try:
                async with self.svc.repo.savepoint():  # a failure undoes this entry only
                    await self.rewrite(entry, {})
                    answer, _ = await self.execute(entry)
                out.append(entry_json(answer, self.base))
            except FhirError as err:
                await self.svc.guard.refused(err)  # audited like the same request refused alone
                out.append({"response": {"status": status_line(err.status), "outcome": err.outcome()}})
        return out


class _Transaction(_Run):
    def __init__(self, svc: FhirService, entries: list[Entry], prefs: Preferences) -> None:
        super().__init__(svc, entries, prefs)
        self.touched: dict[tuple[str, str], int] = {}  # (type, id) written -> index of the entry that did

    async def run(self) -> list[dict[str, Any]]:
        answers: dict[int, dict[str, Any]] = {}
        for entry in self._of("delete"):
            answers[entry.index] = await self.guard(entry, self.write(entry))
        assigned, targets = await self.placeholders()
        for entry in self.entries:
            await self.guard(entry, self.rewrite(entry, targets))
        for entry in self._of("create") + self._of("update", "patch"):
            answers[entry.index] = await self.guard(entry, self.write(entry, assigned.get(entry.index)))
        for entry in self._of("read", "vread", "search", "history"):
            answer, _ = await self.guard(entry, self.execute(entry))
            answers[entry.index] = entry_json(answer, self.base)
        return [answers[e.index] for e in self.entries]

    def _of(self, *interactions: str) -> list[Entry]:
        return [e for e in self.entries if e.interaction in interactions]

    async def guard(self, entry: Entry, step: Awaitable[T]) -> T:
        try:
            return await step
        except FhirError as err:
            raise at_entry(entry, err) from err

    async def write(self, entry: Entry, assigned_id: str | None = None) -> dict[str, Any]:
        answer, outcome = await self.execute(entry, assigned_id)
        stored = outcome.stored if outcome else None
        if stored is not None:
            key = (stored.resource_type, stored.id)
            if key in self.touched:
                raise BadRequest(issues=[duplicate_target(entry, f"{key[0]}/{key[1]}", self.touched[key])])
            self.touched[key] = entry.index
        return entry_json(answer, self.base)

    async def placeholders(self) -> tuple[dict[int, str], dict[str, str]]:
        """Ids for the entries that have a fullUrl, chosen before any of them is written: a new id, the
        match of a conditional create/update, or the id in the URL. A POST's fullUrl, `urn:uuid:` or
        absolute, is only a temporary id (R4 transaction rules), so references to it are rewritten
        too; only a placeholder that names no entry is an error. Also maps each
        conditional create's criteria (`Type?ifNoneExist`) so a conditional reference with the same
        criteria points at that entry, as HAPI does."""
        assigned: dict[int, str] = {}
        targets: dict[str, str] = {}
        for entry in self._of("create", "update", "patch"):
            if entry.full_url is None:
                continue
            res_id = await self.guard(entry, self._target_id(entry))
            if res_id is None:
                continue
            if entry.interaction == "create":
                assigned[entry.index] = res_id
                if entry.if_none_exist:
                    targets[f"{entry.resource_type}?{entry.if_none_exist.split('?', 1)[-1]}"] = (
                        f"{entry.resource_type}/{res_id}"
                    )
            targets[entry.full_url] = f"{entry.resource_type}/{res_id}"
        return assigned, targets

    async def _target_id(self, entry: Entry) -> str | None:
        rtype = entry.resource_type or ""
        if entry.res_id:
            return entry.res_id
        if entry.interaction == "create":
            criteria = create_criteria(entry)
            existing = await self.svc.match_one(rtype, criteria, "create") if criteria is not None else None
            return existing.id if existing else self.svc.repo.new_id()
        existing = await self.svc.match_one(rtype, entry.query, entry.interaction)
        if existing is not None:
            return existing.id
        if entry.interaction == "patch":
            return None  # nothing to patch: the entry itself answers 404 when it runs
        body_id = entry.resource.get("id")
        res_id = body_id if isinstance(body_id, str) else self.svc.repo.new_id()
        # conditional update with no match: create with this id, so the placeholder points at it
        entry.resource = {**entry.resource, "id": res_id}
        return res_id
