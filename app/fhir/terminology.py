"""In-memory terminology over our own CodeSystems and ValueSets (`fhir_profiles/`): ValueSet expansion,
code membership, display lookup and ConceptMap translation. No terminology server is involved; SNOMED CT
is only known through the explicit concept lists our ValueSets carry.

Spec: https://hl7.org/fhir/R4/valueset.html#compositions (compose.include of a whole CodeSystem, of listed
concepts, of other ValueSets; compose.exclude), https://hl7.org/fhir/R4/conceptmap.html.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

Code = tuple[str, str]  # (system, code)


class TerminologyError(ValueError):
    """A ValueSet we cannot expand (filters, unknown CodeSystem without listed concepts, cycles)."""


def _concepts(concepts: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for concept in concepts:
        yield concept
        yield from _concepts(concept.get("concept", ()))  # hierarchical CodeSystems nest concepts


def _strip_version(url: str) -> str:
    return url.split("|", 1)[0]


class Terminology:
    """Built once from the conformance resources; expansions are cached (they never change at run time)."""

    def __init__(
        self,
        code_systems: Iterable[dict[str, Any]],
        value_sets: Iterable[dict[str, Any]],
        concept_maps: Iterable[dict[str, Any]] = (),
    ) -> None:
        self._code_systems = {cs["url"]: cs for cs in code_systems}
        self._value_sets = {vs["url"]: vs for vs in value_sets}
        self._concept_maps = {cm["url"]: cm for cm in concept_maps}
        self._expansions: dict[str, frozenset[Code]] = {}
        self._displays: dict[Code, str] = {}
        for url, cs in self._code_systems.items():
            for concept in _concepts(cs.get("concept", ())):
                if "display" in concept:
                    self._displays[(url, concept["code"])] = concept["display"]
        for vs in self._value_sets.values():  # SNOMED CT displays live only in our ValueSets
            for inc in vs.get("compose", {}).get("include", ()):
                for concept in inc.get("concept", ()):
                    if "display" in concept and "system" in inc:
                        self._displays.setdefault((inc["system"], concept["code"]), concept["display"])

    def has_value_set(self, url: str) -> bool:
        return _strip_version(url) in self._value_sets

    def value_set(self, url: str) -> dict[str, Any]:
        try:
            return self._value_sets[_strip_version(url)]
        except KeyError:
            raise TerminologyError(f"Unknown ValueSet {url}") from None

    def expand(self, url: str) -> frozenset[Code]:
        url = _strip_version(url)
        cached = self._expansions.get(url)
        if cached is None:
            cached = self._expansions[url] = self._expand(url, ())
        return cached

    def _expand(self, url: str, seen: tuple[str, ...]) -> frozenset[Code]:
        if url in seen:
            raise TerminologyError(f"ValueSet {url} includes itself ({' -> '.join(seen + (url,))})")
        compose = self.value_set(url).get("compose")
        if not compose:
            raise TerminologyError(f"ValueSet {url} has no compose to expand")
        included: set[Code] = set()
        for inc in compose.get("include", ()):
            included |= self._include(url, inc, seen + (url,))
        for exc in compose.get("exclude", ()):
            included -= self._include(url, exc, seen + (url,))
        return frozenset(included)

    def _include(self, url: str, inc: dict[str, Any], seen: tuple[str, ...]) -> set[Code]:
        if "filter" in inc:
            raise TerminologyError(f"ValueSet {url}: compose filters are not supported")
        system = inc.get("system")
        codes: set[Code] | None = None
        if system is not None:
            if "concept" in inc:
                codes = {(system, c["code"]) for c in inc["concept"]}
            elif system in self._code_systems:
                cs = self._code_systems[system]
                if cs.get("content") != "complete":
                    raise TerminologyError(f"ValueSet {url}: CodeSystem {system} is not complete")
                codes = {(system, c["code"]) for c in _concepts(cs.get("concept", ()))}
            else:
                raise TerminologyError(
                    f"ValueSet {url}: cannot enumerate all of {system}; list its concepts instead"
                )
        for other in inc.get("valueSet", ()):
            members = set(self._expand(_strip_version(other), seen))
            codes = members if codes is None else codes & members  # several valueSets intersect
        return codes or set()

    def systems(self, url: str) -> frozenset[str]:
        return frozenset(system for system, _ in self.expand(url))

    def validate_code(self, url: str, system: str | None, code: str) -> bool:
        """Is `code` (of `system`; any system when None, as for a plain `code` element) in the ValueSet?"""
        members = self.expand(url)
        if system is None:
            return any(c == code for _, c in members)
        return (system, code) in members

    def display(self, system: str, code: str) -> str | None:
        return self._displays.get((system, code))

    def translate(self, url: str, system: str, code: str) -> list[dict[str, Any]]:
        """ConceptMap targets for (system, code): [{system, code, display, equivalence, dependsOn?...}]."""
        try:
            cm = self._concept_maps[_strip_version(url)]
        except KeyError:
            raise TerminologyError(f"Unknown ConceptMap {url}") from None
        out: list[dict[str, Any]] = []
        for group in cm.get("group", ()):
            if group.get("source") != system:
                continue
            for element in group.get("element", ()):
                if element.get("code") == code:
                    targets = element.get("target", ())
                    out.extend({"system": group.get("target"), **target} for target in targets)
        return out


def _default() -> Terminology:
    # imported here: the store module builds its Terminology from this module's class
    from app.fhir.profiles.store import get_store

    return get_store().terminology


def expand(valueset_url: str) -> frozenset[Code]:
    return _default().expand(valueset_url)


def validate_code(valueset_url: str, system: str | None, code: str) -> bool:
    return _default().validate_code(valueset_url, system, code)


def display(system: str, code: str) -> str | None:
    return _default().display(system, code)


def translate(conceptmap_url: str, system: str, code: str) -> list[dict[str, Any]]:
    return _default().translate(conceptmap_url, system, code)
