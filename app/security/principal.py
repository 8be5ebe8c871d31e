"""Who is asking: the `Principal` built from a verified access token (docs/api/security.md).

Token claims: `iss`, `sub`, `exp`, `scope` (SMART v2), `fhirUser` (`Practitioner/…` or
`PractitionerRole/…`), `role`, `org` (`Organization/…`), `care_setting`, and for SMART Backend
Services tokens `client_id` (RFC 9068). Claims are checked here once; the policy never looks at
raw claims again. A claim with a control character (U+0000-U+001F, U+007F-U+009F) is refused: the
principal's claims go into every AuditEvent and log line, where a NUL cannot be stored (PostgreSQL
JSONB) and a newline or escape would forge or garble a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from app.fhir.search.extract import split_reference
from app.security.scopes import ScopeSet
from app.vocabulary import UserRole

ROLES = (
    UserRole.ED_CLINICIAN,
    UserRole.HEALTH_VISITOR,
    UserRole.SCHOOL_NURSE,
    UserRole.SEXUAL_HEALTH_CLINICIAN,
    UserRole.SAFEGUARDING_LEAD,
    UserRole.MASH_PRACTITIONER,
    UserRole.SYSTEM_CLIENT,
    UserRole.ADMIN,
)

CLAIMS = ("iss", "sub", "role", "scope", "org", "fhirUser", "care_setting", "client_id", "jti")  # what a Principal keeps
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ClaimError(ValueError):
    """A verified token whose claims do not describe a SafeFlag principal."""


def _local_ref(value: Any, claim: str, types: tuple[str, ...], base: str) -> str | None:
    """`Type/id` (or an absolute URL under our FHIR base) -> `Type/id`; anything else is refused."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ClaimError(f"claim '{claim}' must be a string")
    rtype, rid, _url = split_reference(value, base)
    if rtype not in types or not rid:
        raise ClaimError(f"claim '{claim}' must reference one of {', '.join(types)}")
    return f"{rtype}/{rid}"


def _opt_str(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ClaimError(f"claim '{name}' must be a non-empty string")
    return value


@dataclass(frozen=True)
class Principal:
    sub: str
    role: str
    scopes: ScopeSet
    issuer: str
    org: str | None = None  # Organization/x
    fhir_user: str | None = None  # Practitioner/x or PractitionerRole/x
    care_setting: str | None = None
    client_id: str | None = None
    token_id: str | None = None  # jti, recorded in audit as agent.policy (IHE BALP)
    # References that stand for the principal's organisation: the org itself, plus (after
    # `affiliation.enrich`) its PractitionerRoles and their Practitioners. "Their team" in
    # the access rules is the organisation of the user's PractitionerRole: the token's `org`.
    org_refs: frozenset[str] = field(default_factory=frozenset)
    # References that stand for the user personally (fhirUser, and their PractitionerRoles).
    own_refs: frozenset[str] = field(default_factory=frozenset)
    # DocumentReference/Binary references shared with the org by Communications addressed to it
    # (what a MASH practitioner may read); filled by `affiliation.enrich` when needed.
    shared_refs: frozenset[str] = field(default_factory=frozenset)

    @property
    def context(self) -> str:
        """The SMART scope context that counts for this principal: machine clients `system/`,
        human users `user/`."""
        return "system" if self.role == "system" else "user"

    @property
    def base(self) -> str:
        """The FHIR base absolute references are read against."""
        return self.scopes.base

    @property
    def agent_refs(self) -> frozenset[str]:
        return self.org_refs | self.own_refs

    def with_refs(
        self, *, org_refs: frozenset[str] = frozenset(), own_refs: frozenset[str] = frozenset(),
        shared_refs: frozenset[str] = frozenset(),
    ) -> Principal:
        return replace(
            self,
            org_refs=self.org_refs | org_refs,
            own_refs=self.own_refs | own_refs,
            shared_refs=self.shared_refs | shared_refs,
        )

    def to_claims(self) -> dict[str, str]:
        """The claims that rebuild this principal (`from_claims`): what a Subscription stores about its
        creator, so that each delivery is authorised again as that principal."""
        claims = {"iss": self.issuer, "sub": self.sub, "role": self.role, "scope": self.scopes.raw,
                  "org": self.org, "fhirUser": self.fhir_user, "care_setting": self.care_setting,
                  "client_id": self.client_id}
        return {k: v for k, v in claims.items() if v}

    @classmethod
    def from_claims(cls, claims: dict[str, Any], *, base: str = "") -> Principal:
        for name in CLAIMS:
            value = claims.get(name)
            if isinstance(value, str) and _CONTROL.search(value):
                raise ClaimError(f"claim '{name}' contains a control character")
        sub = _opt_str(claims, "sub")
        if sub is None:
            raise ClaimError("claim 'sub' is missing")
        role = claims.get("role")
        if role not in ROLES:
            raise ClaimError(f"claim 'role' must be one of {', '.join(ROLES)}")
        scope = claims.get("scope")
        if not isinstance(scope, str):
            raise ClaimError("claim 'scope' must be a space-separated string")
        issuer = _opt_str(claims, "iss") or ""
        org = _local_ref(claims.get("org"), "org", ("Organization",), base)
        fhir_user = _local_ref(claims.get("fhirUser"), "fhirUser", ("Practitioner", "PractitionerRole"), base)
        return cls(
            sub=sub,
            role=role,
            scopes=ScopeSet.parse(scope, base=base),
            issuer=issuer,
            org=org,
            fhir_user=fhir_user,
            care_setting=_opt_str(claims, "care_setting"),
            client_id=_opt_str(claims, "client_id"),
            token_id=_opt_str(claims, "jti"),
            org_refs=frozenset({org}) if org else frozenset(),
            own_refs=frozenset({fhir_user}) if fhir_user else frozenset(),
        )
