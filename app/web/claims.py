"""From an identity provider's ID-token claims to the claims of a SafeFlag `Principal`.

Which claims carry the role, organisation, practitioner, care setting and display name is configured
(`SAFEFLAG_WEB_CLAIM_*`), and so is how the provider's role values map onto SafeFlag roles
(`SAFEFLAG_WEB_ROLE_MAP`, a JSON object; left empty, the claim must name a SafeFlag role itself). A claim
may hold a string or a list of strings (the first value that maps wins); a dotted name reads a nested
claim (`nhsid_nrbac_roles.0.role_code`). An organisation or practitioner given as a bare code becomes
`Organization/<code>` or `Practitioner/<code>`. A user whose claims map to no role that a person may hold
is refused (`Unmapped`): machine roles (`system`) are never granted through the browser.

Signed-in users get `user/*.cruds`: SMART scopes bound what a role allows and never widen it, so the role
alone decides, by the same policy as for the API.
"""

from __future__ import annotations

import json
from typing import Any

from app.config import Settings
from app.security.principal import ROLES

WEB_SCOPE = "user/*.cruds"
PERSON_ROLES = tuple(r for r in ROLES if r != "system")


class Unmapped(ValueError):
    """The ID token's claims name no SafeFlag role this person may hold."""


def _lookup(claims: dict[str, Any], name: str) -> Any:
    value: Any = claims
    for part in name.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def role_map(settings: Settings) -> dict[str, str]:
    """The configured role mapping; a value that is not a SafeFlag person role is a configuration error."""
    try:
        mapping = json.loads(settings.web_role_map or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"SAFEFLAG_WEB_ROLE_MAP is not JSON: {exc.msg}") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ValueError('SAFEFLAG_WEB_ROLE_MAP must be a JSON object of strings: {"provider value": "safeflag-role"}')
    wrong = sorted(v for v in mapping.values() if v not in PERSON_ROLES)
    if wrong:
        raise ValueError(f"SAFEFLAG_WEB_ROLE_MAP maps to {', '.join(wrong)}: not roles a person may hold")
    return mapping


def _reference(value: Any, rtype: str) -> str | None:
    first = next(iter(_values(value)), None)
    if first is None:
        return None
    return first if "/" in first else f"{rtype}/{first}"


def principal_claims(id_token: dict[str, Any], settings: Settings, issuer: str) -> dict[str, str]:
    """The claims `Principal.from_claims` builds the signed-in user from (plus `name` for the pages)."""
    mapping = role_map(settings)
    offered = _values(_lookup(id_token, settings.web_claim_role))
    roles = [mapping[v] for v in offered if v in mapping] if mapping else [v for v in offered if v in PERSON_ROLES]
    sub = id_token.get("sub")
    if not roles or not isinstance(sub, str) or not sub:
        raise Unmapped("no SafeFlag role for this account")
    claims = {
        "iss": issuer,
        "sub": sub,
        "role": roles[0],
        "scope": WEB_SCOPE,
        "org": _reference(_lookup(id_token, settings.web_claim_org), "Organization"),
        "fhirUser": _reference(_lookup(id_token, settings.web_claim_practitioner), "Practitioner"),
        "care_setting": next(iter(_values(_lookup(id_token, settings.web_claim_care_setting))), None),
        "name": next(iter(_values(_lookup(id_token, settings.web_claim_name))), None),
    }
    return {k: v for k, v in claims.items() if v}
