"""ValueSet expansion, membership, displays and ConceptMap translation over fhir_profiles/
(app/fhir/terminology.py)."""

from __future__ import annotations

from typing import Any

import pytest

from app.fhir import terminology
from app.fhir.terminology import Terminology, TerminologyError

BASE = "https://fhir.safeflag.example"
VS = BASE + "/ValueSet/"
CS = BASE + "/CodeSystem/"
SCT = "http://snomed.info/sct"


def test_whole_code_system_include() -> None:
    assert terminology.expand(VS + "status-reason") == {
        (CS + "status-reason", c)
        for c in ("added-in-error", "no-longer-required", "plan-ended", "superseded")
    }
    assert len(terminology.expand(VS + "safeguarding-flag-category")) == 11


def test_flag_codes_mix_snomed_and_local_codes() -> None:
    local = CS + "safeguarding-flag-category"
    assert terminology.expand(VS + "safeguarding-flag-code") == {
        (SCT, "342191000000101"), (SCT, "764841000000100"), (SCT, "818901000000100"),
        (SCT, "902961000000107"),
        (SCT, "886941000000103"), (SCT, "886951000000100"), (SCT, "1064461000000103"),
        (local, "exploitation-risk"), (local, "significant-adult"), (local, "did-not-wait"),
        (local, "not-brought"),
    }


def test_snomed_value_sets_by_explicit_concepts() -> None:
    assert terminology.expand(VS + "did-not-wait-discharge") == {
        (SCT, "1066301000000103"), (SCT, "1066311000000101"), (SCT, "1066321000000107"),
    }
    assert terminology.expand(VS + "injury-reason") == {
        (SCT, "417746004"), (SCT, "82271004"), (SCT, "125667009"),
    }
    codes = ("urgent-care", "walk-in-centre", "out-of-hours", "maternity-triage")
    local = {(CS + "care-setting", c) for c in codes}
    assert terminology.expand(VS + "unscheduled-care-setting") == {(SCT, "310000008")} | local
    assert terminology.expand(VS + "care-setting") == {
        (SCT, "310000008"), (SCT, "1078501000000104"), (SCT, "931821000000105"), (SCT, "788122004"),
        (SCT, "1326421000000106"),
    } | local


def test_task_value_set_leaves_out_the_output_type() -> None:
    assert terminology.expand(VS + "safeguarding-task") == {
        (CS + "safeguarding-task", "acknowledge"), (CS + "safeguarding-task", "referral-qa"),
    }


def test_validate_code() -> None:
    assert terminology.validate_code(VS + "unscheduled-care-setting", SCT, "310000008")
    assert terminology.validate_code(VS + "unscheduled-care-setting", CS + "care-setting", "walk-in-centre")
    health_visiting = "1078501000000104"
    assert not terminology.validate_code(VS + "unscheduled-care-setting", SCT, health_visiting)
    assert not terminology.validate_code(VS + "unscheduled-care-setting", CS + "care-setting", "310000008")
    assert terminology.validate_code(VS + "status-reason", None, "plan-ended")  # a plain `code`: any system
    assert not terminology.validate_code(VS + "status-reason", None, "Plan-Ended")  # case-sensitive
    assert terminology.validate_code(VS + "status-reason|0.1.0", CS + "status-reason", "superseded")
    with pytest.raises(TerminologyError, match="Unknown ValueSet https://fhir.safeflag.example/ValueSet/nope"):
        terminology.validate_code(VS + "nope", SCT, "1")


def test_display_lookup() -> None:
    fgm = terminology.display(CS + "safeguarding-flag-category", "fgm")
    assert fgm == "Family history of female genital mutilation"
    assert terminology.display(SCT, "82271004") == "Injury of head"  # from the ValueSet's concept list
    assert terminology.display(SCT, "1066301000000103") is None
    assert terminology.display(CS + "care-setting", "nope") is None


def test_translate_category_to_code() -> None:
    cm = BASE + "/ConceptMap/flag-category-to-code"
    local = CS + "safeguarding-flag-category"
    assert terminology.translate(cm, local, "looked-after-child") == [
        {"system": SCT, "code": "764841000000100", "display": "Looked after child",
         "equivalence": "relatedto"}
    ]
    [unborn] = terminology.translate(cm, local, "unborn-child-protection-plan")
    assert (unborn["code"], unborn["dependsOn"][0]["value"]) == ("818901000000100", "mother")
    assert terminology.translate(cm, local, "not-brought") == [
        {"system": local, "code": "not-brought", "display": "Not brought", "equivalence": "equal"}
    ]
    assert terminology.translate(cm, local, "nope") == []
    with pytest.raises(TerminologyError, match="Unknown ConceptMap"):
        terminology.translate(BASE + "/ConceptMap/nope", local, "fgm")


def _vs(vid: str, *includes: dict[str, Any], exclude: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    compose: dict[str, Any] = {"include": list(includes)}
    if exclude:
        compose["exclude"] = exclude
    return {"resourceType": "ValueSet", "url": f"urn:vs:{vid}", "compose": compose}


CS_A = {
    "url": "urn:cs:a", "content": "complete",
    "concept": [{"code": "x", "display": "X", "concept": [{"code": "x1"}]}, {"code": "y"}],
}


def test_nested_concepts_exclude_and_value_set_includes() -> None:
    t = Terminology(
        [CS_A, {"url": "urn:cs:frag", "content": "fragment", "concept": [{"code": "f"}]}],
        [
            _vs("all", {"system": "urn:cs:a"}),
            _vs("no-y", {"system": "urn:cs:a"}, exclude=[{"system": "urn:cs:a", "concept": [{"code": "y"}]}]),
            _vs("both", {"valueSet": ["urn:vs:all", "urn:vs:no-y"]}),
            _vs("loop", {"valueSet": ["urn:vs:loop"]}),
            _vs("filtered", {"system": "urn:cs:a",
                             "filter": [{"property": "concept", "op": "is-a", "value": "x"}]}),
            _vs("sct", {"system": SCT}),
            _vs("frag", {"system": "urn:cs:frag"}),
            {"resourceType": "ValueSet", "url": "urn:vs:empty"},
        ],
    )
    assert t.expand("urn:vs:all") == {("urn:cs:a", "x"), ("urn:cs:a", "x1"), ("urn:cs:a", "y")}
    assert t.expand("urn:vs:no-y") == {("urn:cs:a", "x"), ("urn:cs:a", "x1")}
    assert t.expand("urn:vs:both") == {("urn:cs:a", "x"), ("urn:cs:a", "x1")}  # valueSets intersect
    assert t.systems("urn:vs:all") == {"urn:cs:a"}
    assert t.display("urn:cs:a", "x") == "X"
    for vs, message in [
        ("urn:vs:loop", "includes itself"),
        ("urn:vs:filtered", "compose filters are not supported"),
        ("urn:vs:sct", "cannot enumerate all of http://snomed.info/sct"),
        ("urn:vs:frag", "CodeSystem urn:cs:frag is not complete"),
        ("urn:vs:empty", "has no compose"),
    ]:
        with pytest.raises(TerminologyError, match=message):
            t.expand(vs)
