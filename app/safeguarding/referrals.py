"""MASH referral copies: integrity and immutability of the DocumentReference, its Binary and the
referral Communication (docs/api/referrals.md; https://hl7.org/fhir/R4/documentreference.html,
https://hl7.org/fhir/R4/binary.html). Write rules (put on the interceptor chain by app/resource_rules.py),
run inside the write's transaction: any error rolls back the whole request or transaction Bundle, so no
half-stored referral remains.

DocumentReference of type `mash-referral`:
- created `current`, meeting its profile; every `content.attachment` holds the document either inline
  (`data`) or as `url` = `Binary/<id>` of a Binary already stored here (in a transaction Bundle: the
  Binary entry before the DocumentReference entry, which comes before the Communication entry);
  content type PDF, plain text or HTML; at most `SAFEFLAG_MAX_DOCUMENT_BYTES` (413); `size`/`hash`
  checked when given, filled in when not (attachments.py);
- `date` defaults to the time it is stored, `custodian` to the writer's organisation, and a
  restricted `securityLabel` (v3-Confidentiality R/V) is mirrored into `meta.security`, which is what
  the access policy reads;
- afterwards only `status` may change: to `entered-in-error`, with the `status-reason` extension;
- a correction is a new copy with `relatesTo` {code `replaces`, target the old copy}: the old copy must
  be `current` and about the same child; the server sets it `superseded` (status-reason `superseded`)
  in the same transaction (R4: a replaced document is superseded);
- each Binary it points at gets `securityContext` = this DocumentReference (set by the server when the
  Binary has none; a Binary that belongs to another DocumentReference is refused).
Binary: content type as above, `data` required and bounded, never changed after it is stored.
Communication of category `mash-referral`: `payload.contentReference` a stored referral copy about the
same child, `recipient` the MASH Organization, `sent` defaulting to now; afterwards only `status` may
change (to `entered-in-error`, with `statusReason`); never deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.errors import MethodNotAllowed, Unprocessable
from app.safeguarding.attachments import check_content_type, decode, media_type, seal
from app.safeguarding.referral_rules import (
    STATUS_REASON_CS,
    StatusRule,
    categories,
    check_status_change,
    is_referral_copy,
    local_ref,
    without_extension,
)
from app.storage.repository import utc_ms
from app.stored import format_instant
from app.vocabulary import CONFIDENTIALITY, STATUS_REASON, CommunicationCategory, StatusReason

if TYPE_CHECKING:
    from app.ports import WriteContext
    from app.stored import StoredResource

DOC = "DocumentReference"
RESTRICTED_CODES = ("R", "V")


def _now(ctx: WriteContext) -> str:
    return format_instant(utc_ms(ctx.clock.now()))


async def _current_of(ctx: WriteContext, ref: str | None, *, for_write: bool = False) -> StoredResource | None:
    """`for_write`: a record the server writes later in this transaction (a Binary's securityContext, a
    replaced copy's status), read locked so that a client's write of it under way finishes first and is
    checked, instead of the server's write failing with a 409 (`Repository.get_for_write`)."""
    if ref is None:
        return None
    rtype, _, rid = ref.partition("/")
    found = await (ctx.repo.get_for_write(rtype, rid) if for_write else ctx.repo.get(rtype, rid))
    return None if found is None or found.deleted else found


# -- DocumentReference -----------------------------------------------------------------------------
async def _attachment(
    ctx: WriteContext, att: dict[str, Any], where: str, binaries: list[tuple[str, str]]
) -> dict[str, Any]:
    limit = ctx.settings.max_document_bytes
    check_content_type(att.get("contentType"), f"{where}.contentType")
    data, url = att.get("data"), att.get("url")
    if data is not None and url is not None:
        raise Unprocessable("A referral copy holds its document once: attachment.data or attachment.url "
                            "(a Binary on this server), not both", msg_id="SF-0902", code="business-rule",
                            expression=where)
    if data is not None:
        return seal(att, decode(str(data), limit, f"{where}.data"), where)
    if url is None:
        raise Unprocessable("A referral copy must hold the document: attachment.data, or attachment.url "
                            "naming a Binary on this server", msg_id="SF-0903", code="required", expression=where)
    ref = local_ref(str(url), ctx.base, "Binary")
    if ref is None:
        raise Unprocessable(f"attachment.url '{url}' is not a Binary on this server; a referral copy keeps "
                            "the document here (Binary/<id> or inline data)", msg_id="SF-0904",
                            code="business-rule", expression=f"{where}.url")
    binary = await _current_of(ctx, ref, for_write=True)
    if binary is None:
        raise Unprocessable(f"{ref} is not stored; store the Binary first (in a transaction Bundle, put its "
                            "entry before the DocumentReference)", msg_id="SF-0905", code="not-found",
                            expression=f"{where}.url")
    if media_type(binary.content.get("contentType")) != media_type(att.get("contentType")):
        raise Unprocessable(f"attachment.contentType '{att.get('contentType')}' differs from the contentType "
                            f"'{binary.content.get('contentType')}' of {ref}", msg_id="SF-0906",
                            code="business-rule", expression=f"{where}.contentType")
    binaries.append((where, ref))
    return seal(att, decode(str(binary.content.get("data", "")), limit, f"{where}.url"), where)


async def _replaced(ctx: WriteContext, content: dict[str, Any]) -> list[StoredResource]:
    """The copies this one `replaces`, each checked: a current referral copy about the same child."""
    out = []
    base = ctx.base
    for i, rel in enumerate(content.get("relatesTo") or []):
        if rel.get("code") != "replaces":
            continue
        where = f"{DOC}.relatesTo[{i}].target"
        ref = local_ref(rel.get("target"), base, DOC)
        old = await _current_of(ctx, ref, for_write=True)
        if old is None or not is_referral_copy(old.content):
            raise Unprocessable(f"relatesTo.target '{(rel.get('target') or {}).get('reference')}' is not a stored "
                                "referral copy", msg_id="SF-0918", code="business-rule", expression=where)
        if old.content.get("status") != "current":
            raise Unprocessable(f"{ref} is {old.content.get('status')} and cannot be replaced; only a current "
                                "copy can", msg_id="SF-0919", code="business-rule", expression=where)
        if local_ref(old.content.get("subject"), base) != local_ref(content.get("subject"), base):
            raise Unprocessable(f"{ref} is about another subject; a correction replaces a copy about the same "
                                "child", msg_id="SF-0920", code="business-rule", expression=f"{DOC}.subject")
        out.append(old)
    return out


def _mirror_labels(content: dict[str, Any]) -> dict[str, Any]:
    """A restricted DocumentReference.securityLabel also goes into meta.security, which the policy reads."""
    wanted = [c for cc in content.get("securityLabel") or [] for c in cc.get("coding") or []
              if c.get("system") == CONFIDENTIALITY and c.get("code") in RESTRICTED_CODES]
    meta = dict(content.get("meta") or {})
    have = meta.get("security") or []
    add = [c for c in wanted if not any(h.get("system") == c["system"] and h.get("code") == c["code"] for h in have)]
    if not add:
        return content
    meta["security"] = [*have, *add]
    return {**content, "meta": meta}


async def _new_copy(ctx: WriteContext, content: dict[str, Any], scratch: dict[str, Any]) -> dict[str, Any]:
    if content.get("status") != "current":
        raise Unprocessable(f"A new referral copy must have status 'current', not '{content.get('status')}'",
                            msg_id="SF-0917", code="business-rule", expression=f"{DOC}.status")
    binaries: list[tuple[str, str]] = []
    items = []
    for i, item in enumerate(content.get("content") or []):
        att = await _attachment(ctx, item.get("attachment") or {}, f"{DOC}.content[{i}].attachment", binaries)
        items.append({**item, "attachment": att})
    scratch["binaries"] = binaries
    scratch["replaces"] = await _replaced(ctx, content)
    out = {**content, "content": items}
    if "date" not in out:
        out["date"] = _now(ctx)
    if "custodian" not in out and ctx.org:
        out["custodian"] = {"reference": ctx.org}
    return _mirror_labels(out)


DOC_STATUS = StatusRule(DOC, "extension", f"the status-reason extension ({STATUS_REASON})",
                        ("SF-0914", "SF-0916", "SF-0915"),
                        "; 'superseded' is set by the server when a correction replaces the copy")


async def referral_copy_rules(
    ctx: WriteContext, content: dict[str, Any], current: StoredResource | None, scratch: dict[str, Any]
) -> dict[str, Any]:
    stored = current.content if current is not None and not current.deleted else None
    if stored is not None and is_referral_copy(stored):
        check_status_change(DOC_STATUS, stored, content)
        return content
    if not is_referral_copy(content):
        return content
    if stored is not None:
        raise Unprocessable(f"{DOC}/{stored.get('id')} is not a referral copy and cannot become one; store the "
                            "referral copy as a new DocumentReference", msg_id="SF-0938", code="business-rule",
                            expression=f"{DOC}.type")
    scratch["referral_copy"] = True
    return await _new_copy(ctx, content, scratch)


async def referral_copy_links(
    ctx: WriteContext, stored: StoredResource, previous: StoredResource | None, scratch: dict[str, Any]
) -> None:
    if not scratch.get("referral_copy"):
        return
    me = f"{DOC}/{stored.id}"
    for where, ref in scratch.get("binaries", []):
        binary = await _current_of(ctx, ref)
        assert binary is not None  # checked before the write, in this transaction
        owner = local_ref(binary.content.get("securityContext"), ctx.base)
        if owner is None:
            await ctx.repo.update(binary, {**binary.content, "securityContext": {"reference": me}})
        elif owner != me:
            raise Unprocessable(f"{ref} belongs to {owner} (its securityContext); each referral copy needs its "
                                "own Binary", msg_id="SF-0929", code="business-rule",
                                expression=f"{where}.url")
    for old in scratch.get("replaces", []):
        reason = {"url": STATUS_REASON, "valueCodeableConcept": {"coding": [
            {"system": STATUS_REASON_CS, "code": StatusReason.SUPERSEDED, "display": "Superseded"}]}}
        await ctx.repo.update(old, {**old.content, "status": "superseded",
                                    "extension": [*without_extension(old.content, STATUS_REASON), reason]})


# -- Binary ------------------------------------------------------------------------------------------
async def binary_rules(
    ctx: WriteContext, content: dict[str, Any], current: StoredResource | None, scratch: dict[str, Any]
) -> dict[str, Any]:
    if current is not None and not current.deleted:
        raise Unprocessable(f"Binary/{current.id} is immutable: a stored document cannot be changed; store a "
                            "corrected copy as a new DocumentReference (and Binary) that replaces the old one",
                            msg_id="SF-0913", code="business-rule", expression="Binary")
    check_content_type(content.get("contentType"), "Binary.contentType")
    if not isinstance(content.get("data"), str):
        raise Unprocessable("A Binary holds a referral document: Binary.data is required", msg_id="SF-0911",
                            code="required", expression="Binary.data")
    decode(content["data"], ctx.settings.max_document_bytes, "Binary.data")
    context = content.get("securityContext")
    if context is not None and local_ref(context, ctx.base, DOC) is None:
        raise Unprocessable("Binary.securityContext must be the DocumentReference (on this server) that holds "
                            "this document", msg_id="SF-0912", code="business-rule",
                            expression="Binary.securityContext")
    return content


async def binary_context(
    ctx: WriteContext, stored: StoredResource, previous: StoredResource | None, scratch: dict[str, Any]
) -> None:
    """A securityContext naming a DocumentReference already stored must be one that holds this Binary (a
    DocumentReference not yet stored is fine: it follows in the same transaction and is checked then)."""
    ref = local_ref(stored.content.get("securityContext"), ctx.base, DOC)
    doc = await _current_of(ctx, ref)
    if doc is None:
        return
    mine = f"Binary/{stored.id}"
    urls = [local_ref(str((c.get("attachment") or {}).get("url", "")), ctx.base)
            for c in doc.content.get("content") or []]
    if mine not in urls:
        raise Unprocessable(f"Binary.securityContext names {ref}, which does not hold this Binary",
                            msg_id="SF-0912", code="business-rule", expression="Binary.securityContext")


# -- Communication of category mash-referral ----------------------------------------------------------
COMM = "Communication"


async def _new_referral(ctx: WriteContext, content: dict[str, Any]) -> dict[str, Any]:
    base = ctx.base
    refs = [(i, p.get("contentReference")) for i, p in enumerate(content.get("payload") or [])
            if "contentReference" in p]
    if not refs:
        raise Unprocessable("A mash-referral Communication points at its referral copy: "
                            "payload.contentReference = the DocumentReference", msg_id="SF-0921",
                            code="required", expression=f"{COMM}.payload")
    for i, value in refs:
        ref = local_ref(value, base, DOC)
        doc = await _current_of(ctx, ref)
        where = f"{COMM}.payload[{i}].contentReference"
        if doc is None or not is_referral_copy(doc.content):
            raise Unprocessable(f"payload.contentReference '{(value or {}).get('reference')}' is not a stored "
                                "referral copy (store the DocumentReference first; in a transaction Bundle, "
                                "put its entry before the Communication)", msg_id="SF-0922",
                                code="business-rule", expression=where)
        if local_ref(doc.content.get("subject"), base) != local_ref(content.get("subject"), base):
            raise Unprocessable(f"Communication.subject differs from the subject of {ref}", msg_id="SF-0924",
                                code="business-rule", expression=f"{COMM}.subject")
    if not any(local_ref(r, base, "Organization") for r in content.get("recipient") or []):
        raise Unprocessable("A mash-referral Communication's recipient is the MASH Organization",
                            msg_id="SF-0923", code="required", expression=f"{COMM}.recipient")
    return content if "sent" in content else {**content, "sent": _now(ctx)}


COMM_STATUS = StatusRule(COMM, "statusReason", "a statusReason", ("SF-0925", "SF-0927", "SF-0926"))


async def referral_communication_rules(
    ctx: WriteContext, content: dict[str, Any], current: StoredResource | None, scratch: dict[str, Any]
) -> dict[str, Any]:
    stored = current.content if current is not None and not current.deleted else None
    if stored is not None and CommunicationCategory.MASH_REFERRAL in categories(stored):
        check_status_change(COMM_STATUS, stored, content)
        return content
    if CommunicationCategory.MASH_REFERRAL in categories(content):
        return await _new_referral(ctx, content)
    return content


async def referral_communication_kept(ctx: WriteContext, current: StoredResource) -> None:
    if CommunicationCategory.MASH_REFERRAL in categories(current.content):
        raise MethodNotAllowed(f"{COMM}/{current.id} is part of a referral copy and is never deleted; set its "
                               "status to entered-in-error (with a statusReason) instead", msg_id="SF-0928")
