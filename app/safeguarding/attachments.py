"""The document of a MASH referral copy: allowed content types, the size bound, and the R4 integrity
fields of an Attachment (https://hl7.org/fhir/R4/datatypes.html#Attachment): `size` is the number of
bytes and `hash` the base64 of the SHA-1 of those bytes. Both are checked when the client supplies
them and computed when it does not (docs/api/referrals.md).

Pure functions over JSON; the write rules in `referrals.py` decide where the bytes come from (inline `data`
or a stored Binary, https://hl7.org/fhir/R4/binary.html).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from app.errors import BadRequest, Issue, PayloadTooLarge, Unprocessable

# What a MASH portal exports: PDF, plain text, HTML. Anything else is refused (422, not 415: the
# request itself is FHIR JSON; it is the resource's content that breaks our rule).
ALLOWED_CONTENT_TYPES = ("application/pdf", "text/html", "text/plain")


def media_type(content_type: Any) -> str:
    """`text/plain; charset=utf-8` -> `text/plain` (parameters do not change what the document is)."""
    return str(content_type).split(";", 1)[0].strip().lower()


def check_content_type(content_type: Any, expression: str) -> None:
    if media_type(content_type) not in ALLOWED_CONTENT_TYPES:
        raise Unprocessable(
            f"Content type '{content_type}' is not allowed for a referral document "
            f"(allowed: {', '.join(ALLOWED_CONTENT_TYPES)})",
            msg_id="SF-0901", code="code-invalid", expression=expression,
        )


def check_encoded_size(data: str, limit: int, expression: str) -> None:
    """413 before decoding when the base64 text alone shows the document is over the limit."""
    if len(data) // 4 * 3 - 2 > limit:
        raise too_large(len(data) // 4 * 3, limit, expression, approximate=True)


def too_large(size: int, limit: int, expression: str, *, approximate: bool = False) -> PayloadTooLarge:
    about = "about " if approximate else ""
    return PayloadTooLarge(
        f"The document is {about}{size} bytes; referral documents may be at most {limit} bytes "
        "(SAFEFLAG_MAX_DOCUMENT_BYTES)",
        msg_id="SF-0909", expression=expression,
    )


def decode(data: str, limit: int, expression: str) -> bytes:
    """The bytes of a base64Binary, bounded by `limit` (413 above it)."""
    check_encoded_size(data, limit, expression)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"The document is not valid base64: {exc}", msg_id="SF-0910",
                         expression=expression) from exc
    if len(raw) > limit:
        raise too_large(len(raw), limit, expression)
    return raw


def sha1_base64(raw: bytes) -> str:
    """R4 Attachment.hash: the base64 of the SHA-1 of the data (https://hl7.org/fhir/R4/datatypes.html#Attachment)."""
    return base64.b64encode(hashlib.sha1(raw).digest()).decode("ascii")


def seal(attachment: dict[str, Any], raw: bytes, where: str) -> dict[str, Any]:
    """The attachment with `size` and `hash` of `raw`: checked when supplied (422 naming the element),
    filled in when not. `where` is the attachment's path, e.g. `DocumentReference.content[0].attachment`."""
    issues: list[Issue] = []
    size = attachment.get("size")
    if size is not None and size != len(raw):
        issues.append(Issue(
            "business-rule", f"attachment.size is {size} but the document has {len(raw)} bytes",
            expression=(f"{where}.size",), msg_id="SF-0907",
        ))
    digest = sha1_base64(raw)
    supplied = attachment.get("hash")
    if supplied is not None and not _same_digest(supplied, digest):
        issues.append(Issue(
            "business-rule",
            f"attachment.hash '{supplied}' is not the SHA-1 of the document (base64 '{digest}')",
            expression=(f"{where}.hash",), msg_id="SF-0908",
        ))
    if issues:
        raise Unprocessable(issues=issues)
    return {**attachment, "size": len(raw) if size is None else size, "hash": digest if supplied is None else supplied}


def _same_digest(supplied: Any, digest: str) -> bool:
    """Compare decoded bytes, so that an equivalent base64 spelling is not a mismatch."""
    try:
        return base64.b64decode(str(supplied), validate=True) == base64.b64decode(digest)
    except (binascii.Error, ValueError):
        return False
