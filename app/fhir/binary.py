"""Binary read in its native form (https://hl7.org/fhir/R4/binary.html#rest): a client that asks for FHIR
JSON (`Accept: application/fhir+json`, `application/json`, `*+json`, or `_format=json`) or sends no Accept
gets the Binary resource; any other Accept (`application/pdf`, `text/plain`, `*/*`...) gets the raw
bytes with the Binary's own `contentType`. FHIR XML is answered 406, as everywhere else.

The bytes are bounded when stored (`SAFEFLAG_MAX_DOCUMENT_BYTES`, app/safeguarding/referrals.py), so a
read never decodes more than that.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from app.errors import NotAcceptable, Unprocessable

FHIR_JSON = ("application/fhir+json", "application/json", "application/json+fhir")
FHIR_XML = ("application/fhir+xml", "application/xml+fhir", "application/xml", "text/xml")
JSON_FORMATS = ("json", *FHIR_JSON)


def wants_resource(accept: str | None, fmt: str | None) -> bool:
    """True: answer the Binary as a FHIR resource; False: answer its native content."""
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() in JSON_FORMATS:
            return True
        raise NotAcceptable(f"_format={fmt} is not supported; this server speaks application/fhir+json",
                            msg_id="SF-0010", expression="_format")
    if not accept or not accept.strip():
        return True
    types = [p.split(";")[0].strip().lower() for p in accept.split(",")]
    if any(t in FHIR_JSON or t.endswith("+json") for t in types):
        return True
    if all(t in FHIR_XML for t in types if t):
        raise NotAcceptable(f"Cannot produce '{accept}'; this server speaks application/fhir+json", msg_id="SF-0010")
    return False


def native(content: dict[str, Any]) -> tuple[bytes, str]:
    """(bytes, content type) of a stored Binary."""
    try:
        raw = base64.b64decode(str(content.get("data", "")), validate=True)
    except (binascii.Error, ValueError) as exc:  # stored before the Binary rules existed
        raise Unprocessable(f"Binary/{content.get('id')} holds no readable data", msg_id="SF-0937",
                            expression="Binary.data") from exc
    return raw, str(content.get("contentType") or "application/octet-stream")
