"""The conformance resources in `fhir_profiles/`, loaded once at start: StructureDefinitions, CodeSystems,
ValueSets, ConceptMaps, SearchParameters and the subscription topics (R4 Basic, Subscriptions Backport),
each looked up by canonical URL or listed by resource type so the server can serve them read-only
(https://hl7.org/fhir/R4/resource.html#canonical), plus the example instances under `examples/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import orjson

from app.data_files import data_dir
from app.fhir.terminology import Terminology
from app.vocabulary import HL7_STRUCTURE_DEFINITION, TOPIC_EXTENSION

PROFILES_DIR = data_dir("fhir_profiles")
# The Backport IG carries an R4 topic's canonical URL in this extension on Basic
TOPIC_URL_EXTENSIONS = (HL7_STRUCTURE_DEFINITION + "artifact-url", TOPIC_EXTENSION + "url")


SEARCHABLE = frozenset({"_id", "url", "name", "status", "version", "type", "base", "code"})


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def canonical_of(resource: dict[str, Any]) -> str | None:
    if isinstance(resource.get("url"), str):
        return str(resource["url"])
    for ext in resource.get("extension", ()):
        if ext.get("url") in TOPIC_URL_EXTENSIONS:
            return str(ext.get("valueUri"))
    return None


@dataclass
class ConformanceStore:
    root: Path
    _by_url: dict[str, dict[str, Any]] = field(default_factory=dict)
    _by_type: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    examples: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def load(cls, root: Path | str = PROFILES_DIR) -> ConformanceStore:
        store = cls(Path(root))
        if not store.root.is_dir():
            raise FileNotFoundError(f"Conformance resource folder {store.root} does not exist")
        for path in sorted(store.root.rglob("*.json")):
            try:
                resource = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}: not JSON ({exc})") from None
            if not isinstance(resource, dict) or "resourceType" not in resource or "id" not in resource:
                raise ValueError(f"{path}: not a FHIR resource with resourceType and id")
            if "examples" in path.relative_to(store.root).parts:
                store.examples.append((path, resource))
            else:
                store._add(path, resource)
        return store

    def _add(self, path: Path, resource: dict[str, Any]) -> None:
        rtype, rid = resource["resourceType"], resource["id"]
        if rid in self._by_type.setdefault(rtype, {}):
            raise ValueError(f"{path}: a second {rtype} with id {rid}")
        url = canonical_of(resource)
        if url is None:
            raise ValueError(f"{path}: {rtype}/{rid} has no canonical url")
        if url in self._by_url:
            raise ValueError(f"{path}: a second resource with url {url}")
        self._by_type[rtype][rid] = resource
        self._by_url[url] = resource

    def get(self, url: str) -> dict[str, Any] | None:
        """By canonical URL; a `|version` suffix is ignored (we publish one version of each)."""
        return self._by_url.get(url.split("|", 1)[0])

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        return list(self._by_type.get(resource_type, {}).values())

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        return self._by_type.get(resource_type, {}).get(resource_id)

    def structure_definitions(self) -> list[dict[str, Any]]:
        return self.resources("StructureDefinition")

    def search(self, resource_type: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Read-only search of the served conformance resources by the parameters every canonical
        resource has (https://hl7.org/fhir/R4/canonicalresource.html, exact match; `url` ignores a
        `|version`) plus StructureDefinition `type` and SearchParameter `base`/`code`. Raises KeyError
        naming a parameter it does not know (the caller reports or ignores it, as for any search)."""
        found = self.resources(resource_type)
        for name, value in params.items():
            if name not in SEARCHABLE:
                raise KeyError(name)
            wanted = set(value.split(","))  # a comma is OR, as in any token search
            if name == "url":
                wanted = {v.split("|", 1)[0] for v in wanted}
            key = "id" if name == "_id" else name
            found = [r for r in found if wanted & set(_as_list(r.get(key)))]
        return found

    def profiles_by_type(self) -> dict[str, list[str]]:
        """Our resource profiles per resource type (CapabilityStatement.rest.resource.supportedProfile)."""
        out: dict[str, list[str]] = {}
        for sd in self.structure_definitions():
            if sd.get("kind") == "resource":
                out.setdefault(str(sd["type"]), []).append(str(sd["url"]))
        return out

    def topics(self) -> dict[str, dict[str, Any]]:
        """Subscription topics by canonical URL (Basic resources coded SubscriptionTopic)."""
        out = {}
        for basic in self.resources("Basic"):
            codes = {c.get("code") for c in basic.get("code", {}).get("coding", ())}
            if "SubscriptionTopic" in codes:
                out[str(canonical_of(basic))] = basic
        return out

    def topic_filters(self, url: str) -> list[tuple[str, str]]:
        """(resource type, filter parameter) pairs a Subscription to the topic may filter on."""
        topic = self.topics().get(url)
        if topic is None:
            return []
        out = []
        for ext in topic.get("extension", ()):
            if ext.get("url") == TOPIC_EXTENSION + "canFilterBy":
                parts = {sub["url"]: next(v for k, v in sub.items() if k.startswith("value"))
                         for sub in ext.get("extension", ())}
                out.append((str(parts.get("resource")), str(parts.get("filterParameter"))))
        return out

    @cached_property
    def terminology(self) -> Terminology:
        return Terminology(
            self.resources("CodeSystem"), self.resources("ValueSet"), self.resources("ConceptMap")
        )


_root = PROFILES_DIR  # SAFEFLAG_PROFILES_DIR (app/fhir/profiles `use_profiles`)


@lru_cache(maxsize=1)
def get_store() -> ConformanceStore:
    """The store of the project's own `fhir_profiles/`, or of the folder `SAFEFLAG_PROFILES_DIR` names
    (loaded on first use)."""
    return ConformanceStore.load(_root)


def set_root(root: Path) -> bool:
    """Load the store from `root` from now on; True when that changes the folder."""
    global _root
    if root.resolve() == _root.resolve():
        return False
    _root = root
    get_store.cache_clear()
    return True
