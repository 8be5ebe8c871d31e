"""SMART App Launch v2 resource scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

`context/Type.perms[?param=value&...]`: context `patient` | `user` | `system`, Type a resource type
or `*`, perms an ordered non-empty subset of `cruds` (c create, r read/vread/history, u update/patch,
d delete, s search). SMART v1 suffixes map to v2: `.read` -> `rs`, `.write` -> `cud`, `.*` -> `cruds`.
The optional query narrows a scope to resources matching those search parameters (ANDed), e.g.
`user/Flag.rs?category=https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category|fgm`.
Qualifiers are parsed by the search's own parser and may use plain token and reference parameters
only (a scope with anything else grants nothing: we fail closed rather than guess). Non-resource scopes (`openid`, `fhirUser`, `launch`...) are kept
for display but grant nothing. Scopes only ever narrow what the role allows (docs/api/security.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from app.errors import FhirError
from app.fhir.search.criteria import Criterion, parse_criterion
from app.fhir.search.definitions import SUPPORTED_TYPES, index_values
from app.fhir.search.values import RefValue, TokenValue

PERMISSIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)(?:\?(.*))?$")

# FHIR interaction (https://hl7.org/fhir/R4/http.html) -> SMART v2 permission letter
INTERACTION_LETTER = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history": "r",
    "history-instance": "r",
    "history-type": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
    "search-type": "s",
    "c": "c",
    "r": "r",
    "u": "u",
    "d": "d",
    "s": "s",
}


def letter_of(interaction: str) -> str:
    try:
        return INTERACTION_LETTER[interaction]
    except KeyError:
        raise ValueError(f"unknown interaction '{interaction}'") from None


def _perms(text: str) -> str | None:
    if text in _V1:
        return _V1[text]
    # v2: an ordered subset of c r u d s, each at most once
    if text and re.fullmatch(r"c?r?u?d?s?", text):
        return text
    return None


@dataclass(frozen=True)
class Scope:
    context: str
    resource_type: str  # a type or "*"
    permissions: str  # ordered subset of "cruds"
    params: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        text = f"{self.context}/{self.resource_type}.{self.permissions}"
        if self.params:
            text += "?" + "&".join(f"{k}={quote(v, safe=':/|,.-_~')}" for k, v in self.params)
        return text

    def covers_type(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)

    def matches(self, resource_type: str, resource: dict[str, Any] | None, base: str) -> bool:
        """True when the qualifiers hold for `resource` (None: a type-level check, qualifiers pending)."""
        if not self.params or resource is None:
            return True
        criteria = self.criteria(resource_type, base)
        return criteria is not None and all(_holds(c, resource) for c in criteria)

    def criteria(self, resource_type: str, base: str) -> list[Criterion] | None:
        """The qualifiers as search criteria on `resource_type` (for SQL), None if they cannot apply."""
        return qualifier_criteria(resource_type, self.params, base)


def parse_scope(text: str) -> Scope | None:
    """A resource scope, or None for anything else (identity/launch scopes, malformed text)."""
    m = _SCOPE.match(text)
    if not m:
        return None
    context, rtype, raw_perms, query = m.groups()
    perms = _perms(raw_perms)
    if perms is None or (rtype != "*" and rtype not in SUPPORTED_TYPES):
        return None
    params: tuple[tuple[str, str], ...] = ()
    if query is not None:
        pairs = parse_qsl(query, keep_blank_values=True)
        if not pairs or any(not k or not v for k, v in pairs):
            return None
        if rtype == "*":
            return None  # a qualifier needs a known type to mean anything
        params = tuple(pairs)
        if qualifier_criteria(rtype, params, "") is None:
            return None
    return Scope(context, rtype, perms, params)


def qualifier_criteria(resource_type: str, params: tuple[tuple[str, str], ...], base: str) -> list[Criterion] | None:
    """Qualifiers parsed exactly as the search parses them (so `search_scope.py` can compile them to
    SQL); None when one is not a plain token or reference parameter of the type."""
    out = []
    for key, value in params:
        try:
            crit = parse_criterion(resource_type, key, value, base)
        except FhirError:
            return None
        if crit is None or crit.kind not in ("token", "reference") or crit.modifier or crit.chain or crit.type_hint:
            return None
        out.append(crit)
    return out


def _holds(crit: Criterion, content: dict[str, Any]) -> bool:
    """One qualifier against one resource, compared as `app/search/sql.py` compares index rows."""
    assert crit.param is not None
    for row in index_values(crit.param, content, crit.base):
        for v in crit.values:
            if isinstance(v, TokenValue):
                if (not v.match_system or row[0] == v.system) and (v.code is None or row[1] == v.code):
                    return True
            elif isinstance(v, RefValue):
                if v.url is not None:
                    if row[2] == v.url:
                        return True
                elif row[1] == v.id and (v.type is None or row[0] == v.type):
                    return True
    return False


@dataclass(frozen=True)
class ScopeSet:
    raw: str
    scopes: tuple[Scope, ...]
    base: str = ""

    @classmethod
    def parse(cls, text: str, *, base: str = "") -> ScopeSet:
        parsed = []
        for part in text.split():
            scope = parse_scope(part)
            if scope is not None:
                parsed.append(scope)
        return cls(text, tuple(parsed), base)

    def granting(self, interaction: str, resource_type: str, context: str) -> list[Scope]:
        letter = letter_of(interaction)
        return [
            s for s in self.scopes
            if s.context == context and s.covers_type(resource_type) and letter in s.permissions
        ]

    def allows(
        self, interaction: str, resource_type: str, resource: dict[str, Any] | None = None, *, context: str
    ) -> bool:
        """Does any scope of `context` grant `interaction` on this type (and, given the resource, on it)?

        Without a resource only the type is checked: qualifiers are applied once the resource is
        known (a read after loading, each search result, the body of a write).
        """
        return any(s.matches(resource_type, resource, self.base) for s in self.granting(interaction, resource_type, context))

    def search_constraints(self, resource_type: str, *, context: str) -> list[tuple[tuple[str, str], ...]] | None:
        """For search: None if no scope grants `s`; else the alternatives (ORed) of qualifier lists.
        A list containing `()` means unrestricted. One alternative can be appended to the query as-is."""
        grants = self.granting("s", resource_type, context)
        if not grants:
            return None
        if any(not s.params for s in grants):
            return [()]
        return sorted({s.params for s in grants})

    def __str__(self) -> str:
        return self.raw


def intersect(requested: Scope, registered: Scope) -> Scope | None:
    """The largest scope both allow (SMART Backend Services: granted = requested ∩ registered)."""
    if requested.context != registered.context:
        return None
    if requested.resource_type == "*":
        rtype = registered.resource_type
    elif registered.resource_type in ("*", requested.resource_type):
        rtype = requested.resource_type
    else:
        return None
    perms = "".join(p for p in PERMISSIONS if p in requested.permissions and p in registered.permissions)
    if not perms:
        return None
    # qualifiers within a scope are ANDed, so the union of both lists is exactly the intersection
    params = tuple(dict.fromkeys(registered.params + requested.params))
    return Scope(requested.context, rtype, perms, params)
