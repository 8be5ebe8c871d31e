"""The profile engine beyond our own profiles: selection by meta.profile and default rules, `$validate`
with a named profile, extensible bindings, closed slicing, and profiles the compiler refuses."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.errors import Issue
from app.fhir.profiles import (
    ConformanceStore,
    Engine,
    ProfileError,
    known_profile,
    profile_issues,
    profiles_for,
    validate_against,
)
from app.fhir.profiles.matching import codings, pattern_matcher, reference_type
from app.fhir.profiles.store import PROFILES_DIR
from tests.support.profiles import compile_all

BASE = "https://fhir.safeflag.example"
SD = BASE + "/StructureDefinition/"
CS = BASE + "/CodeSystem/"
VS = BASE + "/ValueSet/"
SCT = "http://snomed.info/sct"


def flag(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "status": "active",
        "category": [{"coding": [{"system": CS + "safeguarding-flag-category", "code": "not-brought"}]}],
        "code": {"coding": [{"system": CS + "safeguarding-flag-category", "code": "not-brought"}]},
        "subject": {"reference": "Patient/p1"},
        "author": {"reference": "Organization/o1"},
        **extra,
    }


def test_default_profiles_per_type() -> None:
    assert profiles_for(flag()) == [SD + "safeguarding-flag"]
    nhs = [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}]
    assert profiles_for({"resourceType": "Patient", "identifier": nhs}) == [SD + "safeguarding-patient"]
    assert profiles_for({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]}) == []
    emer = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}
    assert profiles_for({"resourceType": "Encounter", "class": emer}) == [SD + "ed-attendance-encounter"]
    category = [{"coding": [{"system": CS + "safeguarding-communication-category", "code": "escalation"}]}]
    assert profiles_for({"resourceType": "Communication", "category": category}) == [
        SD + "safeguarding-communication"
    ]
    assert profiles_for({"resourceType": "Communication", "category": [{"text": "letter"}]}) == []
    mash = {"coding": [{"system": CS + "safeguarding-document-type", "code": "mash-referral"}]}
    assert profiles_for({"resourceType": "DocumentReference", "type": mash}) == [
        SD + "referral-copy-document-reference"
    ]
    household = [{"url": SD + "household-member", "valueBoolean": True}]
    assert profiles_for({"resourceType": "RelatedPerson", "extension": household}) == [
        SD + "significant-adult-related-person"
    ]
    assert profiles_for({"resourceType": "RelatedPerson"}) == []
    code = {"coding": [{"system": CS + "safeguarding-task", "code": "acknowledge"}]}
    assert profiles_for({"resourceType": "Task", "code": code}) == [SD + "safeguarding-task"]
    assert profiles_for({"resourceType": "Organization"}) == []


def test_claimed_profiles_unknown_foreign_or_of_another_type() -> None:
    meta = {"profile": [
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Flag",
        "http://hl7.org/fhir/StructureDefinition/Flag",  # the core profile: always met, never reported
        SD + "safeguarding-flag|0.1.0",
        SD + "safeguarding-patient",
    ]}
    resource = flag(meta=meta)
    assert profiles_for(resource) == [SD + "safeguarding-flag"]
    assert profile_issues("Flag", resource) == [
        Issue("not-found", "Profile reference 'https://fhir.hl7.org.uk/StructureDefinition/UKCore-Flag' has "
              "not been checked because it is unknown to this server", "warning", ("Flag.meta.profile",),
              "SF-0615"),
        Issue("invalid", f"Profile '{SD}safeguarding-patient' constrains Patient, not Flag", "error",
              ("Flag.meta.profile",), "SF-0614"),
    ]


def test_validate_against_a_named_profile() -> None:
    assert validate_against(SD + "safeguarding-flag", flag()) == []
    assert validate_against(SD + "nope", flag()) == [
        Issue("not-found", f"Profile '{SD}nope' is unknown to this server", "error", (), "SF-0613")
    ]
    assert validate_against(VS + "status-reason", flag()) == [
        Issue("not-found", f"Profile '{VS}status-reason' is unknown to this server", "error", (), "SF-0613")
    ]
    assert validate_against(SD + "safeguarding-task", flag()) == [
        Issue("invalid", f"Profile '{SD}safeguarding-task' constrains Task, not Flag", "error", ("Flag",),
              "SF-0614")
    ]
    # a named profile applies even where the default rule would not
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}
    [pattern, subject] = validate_against(SD + "ed-attendance-encounter", encounter)
    assert (pattern.msg_id, subject.msg_id) == ("SF-0604", "SF-0601")


def _store(tmp_path: Path, *structure_definitions: dict[str, Any]) -> ConformanceStore:
    for folder in ("CodeSystem", "ValueSet"):
        shutil.copytree(PROFILES_DIR / folder, tmp_path / folder)
    (tmp_path / "StructureDefinition").mkdir()
    shutil.copy(PROFILES_DIR / "StructureDefinition" / "status-reason.json", tmp_path / "StructureDefinition")
    for sd in structure_definitions:
        (tmp_path / "StructureDefinition" / f"{sd['id']}.json").write_text(json.dumps(sd))
    return ConformanceStore.load(tmp_path)


def _sd(sid: str, elements: list[dict[str, Any]], rtype: str = "Flag") -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition", "id": sid, "url": SD + sid, "name": sid, "status": "active",
        "kind": "resource", "abstract": False, "type": rtype, "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/" + rtype,
        "differential": {"element": [{"id": rtype, "path": rtype}, *elements]},
    }


def test_extensible_binding_warns_only_for_codes_of_the_value_sets_systems(tmp_path: Path) -> None:
    sd = _sd("ext-flag", [{"id": "Flag.code", "path": "Flag.code",
                           "binding": {"strength": "extensible", "valueSet": VS + "safeguarding-flag-code"}}])
    engine = Engine(_store(tmp_path, sd))
    assert engine.structure_issues(SD + "ext-flag", flag()) == []
    other = flag(code={"coding": [{"system": "http://read.example", "code": "XaB1"}]})
    assert engine.structure_issues(SD + "ext-flag", other) == []
    for code in ({"coding": [{"system": SCT, "code": "1"}]}, {"text": "free text"}):
        [warning] = engine.structure_issues(SD + "ext-flag", flag(code=code))
        assert (warning.severity, warning.code, warning.msg_id, warning.expression) == (
            "warning", "code-invalid", "SF-0606", ("Flag.code",)
        )


def test_closed_slicing_and_fixed_values(tmp_path: Path) -> None:
    sd = _sd("closed-flag", [
        {"id": "Flag.status", "path": "Flag.status", "fixedCode": "active"},
        {"id": "Flag.category", "path": "Flag.category",
         "slicing": {"discriminator": [{"type": "value", "path": "coding.system"}], "rules": "closed"}},
        {"id": "Flag.category:ours", "path": "Flag.category", "sliceName": "ours", "min": 1},
        {"id": "Flag.category:ours.coding", "path": "Flag.category.coding", "max": "1"},
        {"id": "Flag.category:ours.coding.system", "path": "Flag.category.coding.system",
         "fixedUri": CS + "safeguarding-flag-category"},
    ])
    engine = Engine(_store(tmp_path, sd))
    assert engine.structure_issues(SD + "closed-flag", flag()) == []
    bad = flag(status="inactive")
    bad["category"].append({"coding": [{"system": "urn:other", "code": "x"}]})
    assert engine.structure_issues(SD + "closed-flag", bad) == [
        Issue("value", f'Flag.status: the value must be exactly "active" (profile {SD}closed-flag)', "error",
              ("Flag.status",), "SF-0603"),
        Issue("structure", f"Flag.category: this element matches none of the slices ours and the slicing is "
              f"closed (profile {SD}closed-flag)", "error", ("Flag.category[1]",), "SF-0616"),
    ]


@pytest.mark.parametrize("element,message", [
    ({"id": "Flag.category", "path": "Flag.category",
      "slicing": {"discriminator": [{"type": "type", "path": "$this"}], "rules": "open"}},
     "slicing of Flag.category needs value/pattern discriminators"),
    ({"id": "Flag.code", "path": "Flag.code", "binding": {"strength": "required", "valueSet": VS + "nope"}},
     "ValueSet https://fhir.safeflag.example/ValueSet/nope is not defined"),
    ({"id": "Flag.code", "path": "Flag.code",
      "constraint": [{"key": "x-1", "severity": "error", "human": "x", "expression": "true"}]},
     "invariant x-1 has no native check"),
    ({"id": "Flag.code", "path": "Flag.code", "contentReference": "#Flag.category"},
     "contentReference on Flag.code is not supported"),
    ({"id": "Flag.code", "path": "Flag.status"}, "element id 'Flag.code' does not match its path"),
    ({"id": "Flag.subject", "path": "Flag.subject",
      "type": [{"code": "Reference", "targetProfile": [SD + "unknown-patient"]}]},
     "targetProfile https://fhir.safeflag.example/StructureDefinition/unknown-patient is unknown"),
    ({"id": "Flag.extension:x", "path": "Flag.extension", "sliceName": "x",
      "type": [{"code": "Extension", "profile": [SD + "unknown-ext"]}]},
     "extension https://fhir.safeflag.example/StructureDefinition/unknown-ext is not in fhir_profiles/"),
])
def test_compiler_refuses_what_the_engine_cannot_enforce(
    tmp_path: Path, element: dict[str, Any], message: str
) -> None:
    engine = Engine(_store(tmp_path, _sd("bad", [element])))
    with pytest.raises(ProfileError, match=message):
        compile_all(engine)


def test_compiler_refuses_slices_without_a_discriminating_value(tmp_path: Path) -> None:
    sd = _sd("bad", [
        {"id": "Flag.category", "path": "Flag.category",
         "slicing": {"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"}},
        {"id": "Flag.category:a", "path": "Flag.category", "sliceName": "a", "min": 1},
    ])
    with pytest.raises(ProfileError, match="slice Flag.category:a sets no fixed/pattern value at \\$this"):
        compile_all(Engine(_store(tmp_path, sd)))
    specialization = copy.deepcopy(sd) | {"derivation": "specialization"}
    with pytest.raises(ProfileError, match="only constraint profiles"):
        Engine(ConformanceStore.load(PROFILES_DIR))._compiler.compile(specialization)


def test_matching_helpers() -> None:
    concept = {"coding": [{"system": "t"}, {"system": "s", "code": "c"}]}
    assert pattern_matcher({"coding": [{"system": "s"}]})(concept)
    assert not pattern_matcher({"coding": [{"system": "s"}]})({"coding": {"system": "s"}})
    assert codings("abc") == [(None, "abc")]
    assert codings({"system": "s", "code": "c"}) == [("s", "c")]
    assert codings({"text": "t"}) == []
    assert codings({"reference": "Patient/1"}) is None
    root = {"contained": [{"resourceType": "RelatedPerson", "id": "rp"}]}
    cases = {
        "Patient/1": "Patient", "Patient/1/_history/2": "Patient", "https://x.example/fhir/Group/7": "Group",
        "#rp": "RelatedPerson", "#missing": None, "urn:uuid:0b0e5c5e-0000-4000-8000-000000000000": None,
    }
    for ref, expected in cases.items():
        assert reference_type({"reference": ref}, root) == expected, ref
    assert reference_type({"identifier": {"value": "1"}, "type": "Patient"}, root) == "Patient"
    assert reference_type({"type": "http://hl7.org/fhir/StructureDefinition/Patient"}, root) == "Patient"
    assert reference_type({"display": "someone"}, root) is None


def test_requested_profiles_as_validate_passes_them() -> None:
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}
    requested = [SD + "ed-attendance-encounter|0.1.0", "http://hl7.org/fhir/StructureDefinition/Encounter"]
    assert [i.msg_id for i in profile_issues("Encounter", encounter, requested)] == ["SF-0604", "SF-0601"]
    assert profile_issues("Flag", flag(), [SD + "safeguarding-flag"]) == []  # already its default: once
    assert profile_issues("Flag", flag(), [SD + "nope", SD + "safeguarding-task"]) == [
        Issue("not-found", f"Profile '{SD}nope' is unknown to this server", "error", (), "SF-0613"),
        Issue("invalid", f"Profile '{SD}safeguarding-task' constrains Task, not Flag", "error", ("Flag",),
              "SF-0614"),
    ]


def test_known_profile() -> None:
    assert known_profile("http://hl7.org/fhir/StructureDefinition/Flag", "Flag")
    assert known_profile(SD + "safeguarding-flag|0.1.0", "Flag")
    assert not known_profile(SD + "safeguarding-flag", "Patient")
    assert not known_profile(SD + "status-reason", "Flag")  # an extension is no profile of Flag
    assert not known_profile(VS + "status-reason", "Flag")
    assert not known_profile("http://hl7.org/fhir/StructureDefinition/Patient", "Flag")


def test_a_missing_sliced_element_is_reported_once() -> None:
    no_category = flag()
    del no_category["category"]
    assert profile_issues("Flag", no_category) == [
        Issue("required", "Flag.category: minimum required = 1, but only found 0 "
              f"(profile {SD}safeguarding-flag)", "error", ("Flag.category",), "SF-0601"),
    ]
