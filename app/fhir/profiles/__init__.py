"""SafeFlag's profiles, driven by the conformance resources in `fhir_profiles/` (not a second hand-coded
copy of the rules): load them once (`get_store`), work out which profiles a resource must meet
(`profiles_for`), and validate it (`profile_issues` on every write and in `$validate`, which also
passes its `profile=` canonicals; `validate_against` for one named profile alone). Spec: https://hl7.org/fhir/R4/validation.html,
https://hl7.org/fhir/R4/resource-operation-validate.html

    store.py      ConformanceStore: every file by canonical URL / by type, the examples, the topics
    compiler.py   a StructureDefinition differential -> a tree of checks (once per profile)
    engine.py     the walk: cardinality, fixed/pattern, bindings, reference targets, slices, extensions
    selection.py  meta.profile and the default profile per type
    matching.py   pattern/fixed matching, codings, reference types
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.errors import Issue
from app.fhir.profiles.compiler import ProfileError
from app.fhir.profiles.engine import Engine
from app.fhir.profiles.selection import claimed_profiles, default_profile
from app.fhir.profiles.store import ConformanceStore, get_store, set_root
from app.vocabulary import HL7_STRUCTURE_DEFINITION as HL7_SD

__all__ = [
    "ConformanceStore",
    "Engine",
    "ProfileError",
    "get_engine",
    "get_store",
    "known_profile",
    "profile_issues",
    "profiles_for",
    "use_profiles",
    "validate_against",
]


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return Engine(get_store())


def use_profiles(root: Path) -> None:
    """Validate and serve with the conformance resources under `root` instead of the bundled
    `fhir_profiles/` (setting `SAFEFLAG_PROFILES_DIR`; the server's own tests use it to load a profile
    that its own resources fail)."""
    if set_root(root):
        get_engine.cache_clear()


# validation.py reports every invalid NHS number (SF-0201) before profiles run; not twice
CHECKED_BY_CORE_PIPELINE = frozenset({"sf-nhs-1"})


def _ours(engine: Engine, url: str) -> dict[str, Any] | None:
    sd = engine.store.get(url)
    return sd if sd is not None and sd.get("resourceType") == "StructureDefinition" else None


def known_profile(url: str, resource_type: str, engine: Engine | None = None) -> bool:
    """Can `resource_type` be validated against `url`: the core profile of the type, or ours for it?"""
    url = url.split("|", 1)[0]
    if url == HL7_SD + resource_type:
        return True
    sd = _ours(engine or get_engine(), url)
    return sd is not None and sd.get("type") == resource_type


def profiles_for(content: dict[str, Any], engine: Engine | None = None) -> list[str]:
    """The profiles `content` must meet: the ones it claims that we publish for its type, then its default."""
    return _profiles_for(content, claimed_profiles(content), engine or get_engine())


def _profiles_for(content: dict[str, Any], claimed: list[str], engine: Engine) -> list[str]:
    rtype = str(content.get("resourceType"))
    out = [url for url in claimed if known_profile(url, rtype, engine)]
    default = default_profile(content)
    if default is not None and default not in out:
        out.append(default)
    return out


def profile_issues(
    resource_type: str,
    content: dict[str, Any],
    requested: Sequence[str] = (),
    engine: Engine | None = None,
    *,
    extensions: Sequence[tuple[str, dict[str, Any]]] | None = None,
) -> list[Issue]:
    """Every profile issue of a resource being written or `$validate`d (errors and warnings): against
    `profiles_for(content)` plus the `requested` profiles (`$validate?profile=`), then every extension of
    ours in it. The caller answers 422 when any issue is an error; warnings may go back to the client.
    `extensions`: (expression, extension) of every Extension in `content`, when the caller has them at
    hand (the element walk of `validation.py`, on a structurally valid resource): spares searching the
    JSON for ours."""
    engine = engine or get_engine()
    issues: list[Issue] = []
    claimed = claimed_profiles(content)
    for url in claimed:
        sd = _ours(engine, url)
        if sd is None:
            issues.append(Issue(
                "not-found",
                f"Profile reference '{url}' has not been checked because it is unknown to this server",
                "warning", (f"{resource_type}.meta.profile",), "SF-0615",
            ))
        elif sd.get("type") != resource_type:
            issues.append(_wrong_type(url, sd, resource_type, f"{resource_type}.meta.profile"))
    urls = _profiles_for(content, claimed, engine)
    for url in requested:
        url = url.split("|", 1)[0]
        if url in urls or url == HL7_SD + resource_type:
            continue
        sd = _ours(engine, url)
        if sd is None:
            issues.append(_unknown(url))
        elif sd.get("type") != resource_type:
            issues.append(_wrong_type(url, sd, resource_type, resource_type))
        else:
            urls.append(url)
    for url in urls:
        issues.extend(engine.structure_issues(url, content, CHECKED_BY_CORE_PIPELINE))
    issues.extend(engine.extension_issues(content, extensions))
    return issues


def validate_against(profile_url: str, content: dict[str, Any], engine: Engine | None = None) -> list[Issue]:
    """The issues of `content` against one named profile only (unknown profile = error SF-0613), with
    every invariant the profile carries (the NHS number check too)."""
    engine = engine or get_engine()
    rtype = str(content.get("resourceType"))
    url = profile_url.split("|", 1)[0]
    sd = _ours(engine, url)
    if sd is None:
        return [_unknown(profile_url)]
    if sd.get("type") != rtype:
        return [_wrong_type(url, sd, rtype, rtype)]
    return engine.structure_issues(url, content) + engine.extension_issues(content)


def _unknown(url: str) -> Issue:
    return Issue("not-found", f"Profile '{url}' is unknown to this server", "error", (), "SF-0613")


def _wrong_type(url: str, sd: dict[str, Any], resource_type: str, expr: str) -> Issue:
    return Issue(
        "invalid",
        f"Profile '{url}' constrains {sd.get('type')}, not {resource_type}",
        "error", (expr,), "SF-0614",
    )
