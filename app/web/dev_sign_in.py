"""Development sign-in: sign in as one of the `safeflag demo` borough's people, without a provider.

Only when `SAFEFLAG_WEB_DEV_SIGN_IN` is set and the server listens on a loopback address: `safeflag serve`
refuses to start with it on any other bind (`check_bind`), and the form is refused to a client that is
not itself on loopback. The people carry the claims the demo's own tokens carry.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.clock import is_loopback
from app.config import Settings
from app.demo.borough import ED, ED_CARE_SETTING, ED_NURSE, HV, LEAD, MASH, ZERO19
from app.vocabulary import UserRole
from app.web.claims import WEB_SCOPE, role_map

ISSUER = "safeflag-development-sign-in"


@dataclass(frozen=True)
class Person:
    key: str
    name: str
    description: str
    role: str
    org: str
    fhir_user: str | None
    care_setting: str | None

    def claims(self) -> dict[str, str]:
        claims = {"iss": ISSUER, "sub": f"demo-{self.key}", "role": self.role, "scope": WEB_SCOPE,
                  "org": self.org, "fhirUser": self.fhir_user, "care_setting": self.care_setting,
                  "name": self.name}
        return {k: v for k, v in claims.items() if v}


PEOPLE = (
    Person("hv", "Hana Visitor", "health visitor, Demo 0-19 Service", UserRole.HEALTH_VISITOR, ZERO19, HV, None),
    Person("lead", "Sam Lead", "safeguarding lead, Demo 0-19 Service", UserRole.SAFEGUARDING_LEAD, ZERO19, LEAD, None),
    Person("ed-nurse", "Eddie Nurse", "ED clinician, Demo General Hospital", UserRole.ED_CLINICIAN, ED, ED_NURSE,
           ED_CARE_SETTING),
    Person("mash", "Morgan Mash", "MASH practitioner, Demo Borough MASH", UserRole.MASH_PRACTITIONER, MASH, None,
           None),
)


def person(key: str) -> Person | None:
    return next((p for p in PEOPLE if p.key == key), None)


def check_config(settings: Settings, host: str) -> str | None:
    """Why `safeflag serve` must not start with this web configuration, or None: development sign-in on
    a non-loopback bind, or a role map that is not one."""
    refusal = check_bind(settings.web_dev_sign_in, host)
    if refusal:
        return refusal
    try:
        role_map(settings)
    except ValueError as exc:
        return f"refusing to start: {exc}"
    return None


def check_bind(enabled: bool, host: str) -> str | None:
    """Why the server must not start (development sign-in on a non-loopback bind), or None."""
    if enabled and not is_loopback(host):
        return (f"refusing to start: development sign-in (SAFEFLAG_WEB_DEV_SIGN_IN) is allowed only on a loopback "
                f"address, not {host or 'all addresses'}")
    return None
