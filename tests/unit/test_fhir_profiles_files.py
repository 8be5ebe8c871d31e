"""The files in fhir_profiles/ themselves: valid R4 (R4B models), canonical URLs as in contract section 4,
the codes and tables the contract lists, examples with valid test-range NHS numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from app.fhir import nhs_number
from app.fhir.profiles import ConformanceStore, get_store
from app.fhir.profiles.store import PROFILES_DIR
from app.fhir.resources import model_class

BASE = "https://fhir.safeflag.example"
CS = BASE + "/CodeSystem/"
SD = BASE + "/StructureDefinition/"
FILES = sorted(PROFILES_DIR.rglob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def store() -> ConformanceStore:
    return get_store()


def test_folder_holds_the_expected_files() -> None:
    counts: dict[str, int] = {}
    for path in FILES:
        folder = path.relative_to(PROFILES_DIR).parts[0]
        counts[folder] = counts.get(folder, 0) + 1
    assert counts == {
        "CodeSystem": 10, "ConceptMap": 1, "OperationDefinition": 3, "SearchParameter": 5, "StructureDefinition": 13,
        "SubscriptionTopic": 4, "ValueSet": 14, "examples": 15,
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PROFILES_DIR)))
def test_every_file_is_a_valid_r4_resource(path: Path) -> None:
    resource = _load(path)
    model_class(resource["resourceType"]).model_validate(resource)  # raises on any structural error
    folder = path.relative_to(PROFILES_DIR).parts[0]
    if folder == "examples":
        assert path.name == f"{resource['resourceType']}-{resource['id']}.json"
    elif folder == "SubscriptionTopic":
        assert resource["resourceType"] == "Basic" and path.name == f"{resource['id']}.json"
    else:
        assert resource["resourceType"] == folder
        assert path.name == f"{resource['id']}.json"
        assert resource["url"] == f"{BASE}/{folder}/{resource['id']}"
        assert resource["status"] == "active" and resource["version"] == "0.1.0"


def test_structure_definitions_are_r4_constraints(store: ConformanceStore) -> None:
    for sd in store.structure_definitions():
        extension = sd["type"] == "Extension"
        assert sd["fhirVersion"] == "4.0.1"
        assert sd["derivation"] == "constraint" and sd["abstract"] is False
        assert sd["kind"] == ("complex-type" if extension else "resource")
        assert sd["baseDefinition"] == "http://hl7.org/fhir/StructureDefinition/" + sd["type"]
        assert ("context" in sd) is extension
        assert "snapshot" not in sd
        elements = sd["differential"]["element"]
        assert elements[0]["id"] == sd["type"] and "type" not in elements[0]  # sdf-15a
        ids = [e["id"] for e in elements]
        assert len(ids) == len(set(ids))
        for e in elements:
            assert e["path"] == re.sub(r":[^.]+", "", e["id"])
            if ":" in e["id"].rsplit(".", 1)[-1]:
                assert e["sliceName"] == e["id"].rsplit(":", 1)[-1]
            for t in e.get("type", ()):
                for ref in [*t.get("targetProfile", ()), *t.get("profile", ())]:
                    assert ref.startswith("http://hl7.org/fhir/StructureDefinition/") or store.get(ref), ref
            if "binding" in e:
                assert store.get(e["binding"]["valueSet"]) is not None, e["binding"]
        if extension:
            url_el = next(e for e in elements if e["id"] == "Extension.url")
            assert url_el["fixedUri"] == sd["url"]


def test_profile_and_extension_urls(store: ConformanceStore) -> None:
    assert sorted(sd["url"] for sd in store.structure_definitions()) == sorted(SD + n for n in [
        "ed-attendance-encounter", "household-member", "parental-responsibility",
        "referral-copy-document-reference", "safeguarding-communication", "safeguarding-flag",
        "safeguarding-patient", "safeguarding-task", "significant-adult", "significant-adult-related-person",
        "significant-individual", "status-reason", "subscription-secret",
    ])


def _codes(store: ConformanceStore, name: str) -> list[str]:
    cs = store.get(CS + name)
    assert cs is not None and cs["content"] == "complete" and cs["caseSensitive"] is True
    assert cs["count"] == len(cs["concept"])
    assert all(c.get("display") and c.get("definition") for c in cs["concept"])
    return [c["code"] for c in cs["concept"]]


def test_code_systems_hold_the_contract_codes(store: ConformanceStore) -> None:
    assert _codes(store, "safeguarding-flag-category") == [
        "child-protection-plan", "looked-after-child", "unborn-child-protection-plan", "fgm", "risk-to-self",
        "risk-to-others", "risk-from-others", "exploitation-risk", "significant-adult", "did-not-wait",
        "not-brought",
    ]
    assert _codes(store, "safeguarding-communication-category") == [
        "ed-attendance", "did-not-wait", "think-family", "mash-referral", "referral-outcome",
        "access-notification", "escalation",
    ]
    assert _codes(store, "safeguarding-document-type") == ["mash-referral"]
    assert _codes(store, "care-team-role") == ["health-visitor", "school-nurse", "safeguarding-lead"]
    assert _codes(store, "organization-role") == [
        "zero-to-nineteen-service", "zero-to-nineteen-duty", "local-authority-mash", "emergency-department",
        "sexual-health-service",
    ]
    # `escalated` is the Task.businessStatus of an overdue acknowledgement Task (app/safeguarding/tasks.py)
    assert _codes(store, "safeguarding-task") == ["acknowledge", "referral-qa", "qa-outcome", "escalated"]
    assert _codes(store, "referral-qa-outcome") == [
        "clear-and-complete", "incomplete-information", "threshold-not-evident", "escalated",
    ]
    assert _codes(store, "status-reason") == [
        "added-in-error", "no-longer-required", "plan-ended", "superseded",
    ]
    assert _codes(store, "care-setting") == [
        "urgent-care", "walk-in-centre", "out-of-hours", "maternity-triage",
    ]


def test_concept_map_is_the_contract_table(store: ConformanceStore) -> None:
    cm = store.get(BASE + "/ConceptMap/flag-category-to-code")
    assert cm is not None
    table = {
        e["code"]: [(g["target"], t["code"], t.get("dependsOn")) for t in e["target"]]
        for g in cm["group"] for e in g["element"]
    }
    sct = "http://snomed.info/sct"
    local = CS + "safeguarding-flag-category"
    mother = [{"property": BASE + "/ConceptMap/flag-category-to-code#subject", "value": "mother"}]
    assert table == {
        "child-protection-plan": [(sct, "342191000000101", None)],
        "looked-after-child": [(sct, "764841000000100", None)],
        "unborn-child-protection-plan": [(sct, "818901000000100", mother)],
        "fgm": [(sct, "902961000000107", None)],
        "risk-to-self": [(sct, "886941000000103", None)],
        "risk-to-others": [(sct, "886951000000100", None)],
        "risk-from-others": [(sct, "1064461000000103", None)],
        "exploitation-risk": [(local, "exploitation-risk", None)],
        "significant-adult": [(local, "significant-adult", None)],
        "did-not-wait": [(local, "did-not-wait", None)],
        "not-brought": [(local, "not-brought", None)],
    }


def test_search_parameters(store: ConformanceStore) -> None:
    got = {(sp["url"], sp["code"], tuple(sp["base"]), sp["type"], sp["expression"])
           for sp in store.resources("SearchParameter")}
    assert got == {
        (BASE + "/SearchParameter/flag-status", "status", ("Flag",), "token", "Flag.status"),
        (BASE + "/SearchParameter/flag-category", "category", ("Flag",), "token", "Flag.category"),
        (BASE + "/SearchParameter/flag-code", "code", ("Flag",), "token", "Flag.code"),
        (BASE + "/SearchParameter/relatedperson-family", "family", ("RelatedPerson",), "string",
         "RelatedPerson.name.family"),
        (BASE + "/SearchParameter/relatedperson-given", "given", ("RelatedPerson",), "string",
         "RelatedPerson.name.given"),
    }


def test_subscription_topics_and_their_filters(store: ConformanceStore) -> None:
    topic = BASE + "/SubscriptionTopic/"
    assert sorted(store.topics()) == sorted(
        topic + n for n in ["access-notification", "ed-attendance", "mash-referral", "safeguarding-flag"]
    )
    filters = {url: store.topic_filters(url) for url in store.topics()}
    assert filters == {
        topic + "ed-attendance": [("Communication", "recipient"), ("Communication", "patient")],
        topic + "safeguarding-flag": [("Flag", "patient"), ("Flag", "category"), ("Flag", "author")],
        topic + "mash-referral": [
            ("Communication", "sender"), ("Communication", "recipient"), ("Communication", "patient"),
        ],
        topic + "access-notification": [("Communication", "recipient")],
    }
    assert store.topic_filters(topic + "unknown") == []


def _identifiers(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [i for item in node for i in _identifiers(item)]
    if not isinstance(node, dict):
        return []
    found = [node] if node.get("system") == nhs_number.NHS_NUMBER_SYSTEM else []
    return found + [i for v in node.values() for i in _identifiers(v)]


def test_examples_use_valid_test_range_nhs_numbers_and_claim_their_profile(store: ConformanceStore) -> None:
    numbers = set()
    for path, example in store.examples:
        for identifier in _identifiers(example):
            assert nhs_number.is_valid(identifier["value"]) and identifier["value"].startswith("999"), path
            numbers.add(identifier["value"])
        if example["resourceType"] != "Subscription":  # an extension example, no profile of ours
            assert [store.get(p)["type"] for p in example["meta"]["profile"]] == [example["resourceType"]]
    assert numbers == {"9990000018", "9990000026", "9990000034"}


def test_every_profile_and_extension_has_an_example(store: ConformanceStore) -> None:
    used = set()
    for _, example in store.examples:
        used.update(example.get("meta", {}).get("profile", ()))
        text = json.dumps(example)
        used.update(sd["url"] for sd in store.structure_definitions() if f'"{sd["url"]}"' in text)
    assert used == {sd["url"] for sd in store.structure_definitions()}


def test_store_rejects_duplicates_and_non_resources(tmp_path: Path) -> None:
    (tmp_path / "CodeSystem").mkdir()
    cs = {"resourceType": "CodeSystem", "id": "a", "url": BASE + "/CodeSystem/a", "status": "active",
          "content": "complete"}
    (tmp_path / "CodeSystem" / "a.json").write_text(json.dumps(cs))
    (tmp_path / "CodeSystem" / "b.json").write_text(json.dumps({**cs, "id": "b"}))
    with pytest.raises(ValueError, match="a second resource with url https://fhir.safeflag.example/CodeSystem/a"):
        ConformanceStore.load(tmp_path)
    (tmp_path / "CodeSystem" / "b.json").write_text("[]")
    with pytest.raises(ValueError, match="not a FHIR resource with resourceType and id"):
        ConformanceStore.load(tmp_path)
    (tmp_path / "CodeSystem" / "b.json").unlink()
    loaded = ConformanceStore.load(tmp_path)
    assert loaded.read("CodeSystem", "a") == cs and loaded.resources("CodeSystem") == [cs]
    with pytest.raises(FileNotFoundError):
        ConformanceStore.load(tmp_path / "missing")


def test_read_only_search_and_supported_profiles(store: ConformanceStore) -> None:
    def ids(rtype: str, **params: str) -> list[str]:
        return sorted(r["id"] for r in store.search(rtype, params))

    assert ids("StructureDefinition", type="Flag") == ["safeguarding-flag"]
    assert ids("StructureDefinition", type="Extension", name="StatusReason,HouseholdMember") == [
        "household-member", "status-reason",
    ]
    assert ids("ValueSet", url=BASE + "/ValueSet/care-setting|0.1.0") == ["care-setting"]
    assert ids("SearchParameter", base="Flag", code="status") == ["flag-status"]
    assert ids("CodeSystem", _id="status-reason", status="active") == ["status-reason"]
    assert ids("CodeSystem", status="draft") == []
    assert len(ids("CodeSystem")) == 10
    assert ids("Patient") == []  # examples are not served
    with pytest.raises(KeyError, match="publisher"):
        store.search("CodeSystem", {"publisher": "SafeFlag"})
    assert store.profiles_by_type() == {
        "Communication": [SD + "safeguarding-communication"],
        "DocumentReference": [SD + "referral-copy-document-reference"],
        "Encounter": [SD + "ed-attendance-encounter"],
        "Flag": [SD + "safeguarding-flag"],
        "Patient": [SD + "safeguarding-patient"],
        "RelatedPerson": [SD + "significant-adult-related-person"],
        "Task": [SD + "safeguarding-task"],
    }
