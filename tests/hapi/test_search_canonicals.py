"""The search parameter tables SafeFlag keeps by hand, checked against R4's own definitions: HL7's
`search-parameters.json` (FHIR 4.0.1) as HAPI FHIR 8.8.0 bundles it in the launcher jar
(hapi-fhir-validation-resources-r4). Each parameter's CapabilityStatement `definition`
(app/fhir/search/canonicals.py) is R4's SearchParameter for that type and code, of the same type, or
ours where R4 has none; each `_revinclude` target table entry (app/fhir/search/targets.py) is R4's
`SearchParameter.target` narrowed to the served types (and, for the Flag, to its profile)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.fhir.conformance import SEARCH_PARAMS
from app.fhir.search.canonicals import CORE, OWN, OWN_PARAMS, definition
from app.fhir.search.definitions import SPECIAL, SUPPORTED_TYPES, params_for
from app.fhir.search.targets import REFERENCE_TARGETS

pytestmark = pytest.mark.hapi

RESOURCES_JAR = "BOOT-INF/lib/hapi-fhir-validation-resources-r4-8.8.0.jar"
REGISTRY = "org/hl7/fhir/r4/model/sp/search-parameters.json"
FLAG_PROFILE = {("Flag", "subject"): ("Patient",), ("Flag", "author"): ("Practitioner", "PractitionerRole",
                                                                          "Organization")}


@pytest.fixture(scope="module")
def r4(hapi_jar: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """R4's SearchParameters by (base type, code)."""
    with zipfile.ZipFile(hapi_jar) as outer, zipfile.ZipFile(io.BytesIO(outer.read(RESOURCES_JAR))) as inner:
        bundle = orjson.loads(inner.read(REGISTRY))
    return {(base, e["resource"]["code"]): e["resource"] for e in bundle["entry"] for base in e["resource"]["base"]}


def _served() -> list[tuple[str, str, str]]:
    """(type, name, type of parameter) of every search parameter the CapabilityStatement lists."""
    out = [(t, n, kind) for t in SUPPORTED_TYPES for n, kind in SPECIAL.items()]
    out += [(t, p.name, p.type) for t in SUPPORTED_TYPES for p in params_for(t).values()]
    out += [(t, "_id", "token") for t in SEARCH_PARAMS]
    out += [(t, n, kind) for t, params in SEARCH_PARAMS.items() for n, kind, _doc in params]
    return out


def test_each_definition_is_r4s_own_or_ours(r4: dict[tuple[str, str], dict[str, Any]]) -> None:
    ours = []
    for rtype, name, kind in _served():
        url = definition(rtype, name)
        core = r4.get((rtype, name)) or r4.get(("Resource", name))
        if core is None:
            assert url.startswith(OWN), (rtype, name, url)
            ours.append((rtype, name))
            continue
        assert (url, kind) == (core["url"], core["type"]), (rtype, name)
        assert url == CORE + core["id"]
    assert sorted(ours) == sorted(OWN_PARAMS)


def test_reference_targets_are_r4s(r4: dict[tuple[str, str], dict[str, Any]]) -> None:
    untargeted = {(t, p.name) for t in SUPPORTED_TYPES for p in params_for(t).values()
                  if p.type == "reference" and not p.targets}
    assert set(REFERENCE_TARGETS) == untargeted
    for key, listed in REFERENCE_TARGETS.items():
        targets = r4[key]["target"]
        expected = None if len(targets) > 100 else tuple(t for t in SUPPORTED_TYPES if t in targets)
        if key in FLAG_PROFILE:
            expected = FLAG_PROFILE[key]
        assert (None if listed is None else sorted(listed)) == (None if expected is None else sorted(expected)), key
