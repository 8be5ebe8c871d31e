"""The shortcuts of the write-path validation give the answers of the long way round: the quick primitive
tests never accept what `primitive_problem` refuses, ele-1 is reported exactly where `empty_elements`
finds it although the element walk now runs first, the walk keeps every Node the invariants need, and
the profile engine checks our extensions from the walk's list as it does by searching the JSON.
Test-range NHS numbers only."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from app.errors import BadRequest, FhirError
from app.fhir.elements import MAX_STRING, _plainly_valid, primitive_problem, walk
from app.fhir.invariants import invariant_issues
from app.fhir.profiles import get_engine, get_store, profile_issues
from app.fhir.validation import INVARIANT_PATHS, empty_elements, validate_resource
from tests.unit.test_validation import FLAG, VALID

SD = "https://fhir.safeflag.example/StructureDefinition/"
CS = "https://fhir.safeflag.example/CodeSystem/"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
PRIMITIVES = ("boolean", "integer", "unsignedInt", "positiveInt", "decimal", "string", "markdown", "xhtml", "code",
              "id", "uri", "url", "canonical", "oid", "uuid", "base64Binary", "date", "dateTime", "instant", "time")
SPACES = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
ODD = "\x00\x01\x08\x0e\x1b\x7f\u00ad\u200b\ufeff\U0001f600é²٣"


def _values() -> list[Any]:
    texts = ["", "a", "a b", "a  b", " a", "a ", "active", "child-protection-plan", "text/plain; charset=utf-8",
             "http://snomed.info/sct", "urn:oid:1.2.3", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
             "aGk=", "aGk= ", " aGk=", "aGk=\x0b", "x" * 64, "x" * 65, "x" * MAX_STRING, "x" * (MAX_STRING + 1),
             "0000", "2026", "2026-02", "2026-02-28", "2024-02-29", "2026-02-29", "2026-04-30", "2026-04-31",
             "2026-01-31", "2026-13-01", "2026-01-05T09:00:00Z", "2026-02-29T09:00:00Z", "2026-04-31T23:59:60+14:00",
             "2026-01-05T09:00:00", "2026-01-05T24:00:00Z", "23:59:59.5", "9:00", "<div>x</div>"]
    for ch in SPACES + ODD:
        texts += [ch, ch * 3, f"a{ch}b", f"{ch}a", f"a{ch}", f"2026-01-05{ch}", f"http://x{ch}y"]
    return [*texts, None, True, False, 0, 1, -1, 2**31 - 1, 2**31, 1.5, 2.0, [], {}, ["a"], {"a": 1}]


@pytest.mark.parametrize("type_name", PRIMITIVES)
def test_quick_primitive_checks_accept_only_what_primitive_problem_accepts(type_name: str) -> None:
    plainly_valid = _plainly_valid(type_name)
    accepted = [v for v in _values() if plainly_valid(v)]
    for value in accepted:
        assert primitive_problem(type_name, value) is None, (type_name, value)
        assert not (isinstance(value, str) and not value.strip()), (type_name, value)  # ele-1 blanks go the long way
    assert accepted, type_name  # the quick check does take the common values


# -- ele-1 --------------------------------------------------------------------------------------------------
def _resources() -> list[dict[str, Any]]:
    return [copy.deepcopy(r) for r in VALID] + [copy.deepcopy(r) for _, r in get_store().examples]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in children:
        if key != "resourceType":
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    return out


def _outcome(resource: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    try:
        validate_resource(resource["resourceType"], resource)
    except FhirError as exc:
        return exc.status, [i.to_fhir() for i in exc.issues]
    return 200, []


def test_ele1_is_reported_exactly_where_empty_elements_finds_it() -> None:
    checked = 0
    for resource, blank, extra in itertools.product(_resources(), (None, "", " \n", {}, [], [None]), (None, "foo")):
        for path in [p for p in _paths(resource) if p != ("id",)][::3]:  # the shape check reports the id first
            mutant = copy.deepcopy(resource)
            target = mutant
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = copy.deepcopy(blank)
            if extra:  # an unknown element the walk does not go into, hiding an empty string
                mutant[extra] = {"x": ""}
            status, issues = _outcome(mutant)
            empties = list(empty_elements(mutant, mutant["resourceType"]))
            ele1 = [i for i in issues if i["diagnostics"].startswith("SF-0106")]
            if empties:
                checked += 1
                assert status == 400 and issues == ele1, (path, blank, issues)
                assert [i["expression"] for i in issues] == [[e] for e in empties]
            else:
                assert ele1 == [], (path, blank)
    assert checked > 500


def test_nulls_are_allowed_in_primitive_extension_arrays_only() -> None:
    name = {"family": "Smith", "given": ["Amy", "Jo"], "_given": [None, {"id": "g2"}]}
    assert validate_resource("Patient", {"resourceType": "Patient", "name": [name]}) == []
    with pytest.raises(BadRequest) as raised:
        validate_resource("Patient", {"resourceType": "Patient", "name": [{**name, "given": ["Amy", None]}]})
    assert [i.expression for i in raised.value.issues] == [("Patient.name[0].given[1]",)]


# -- the Nodes the invariants need ---------------------------------------------------------------------------
def test_the_walk_keeps_every_node_an_invariant_looks_at() -> None:
    org = {"resourceType": "Organization", "id": "o", "active": True, "address": [{"use": "home"}],
           "extension": [{"url": "http://x"}]}
    cases = [
        {**FLAG, "period": {"start": "2026-02-01", "end": "2026-01-31"}, "contained": [org],
         "extension": [{"url": "http://x", "valuePeriod": {"start": "2026-02-01", "end": "2026-01-01"}}]},
        {"resourceType": "Patient", "contact": [{"gender": "male", "telecom": [{"value": "1"}]}],
         "managingOrganization": {"reference": "#nope"}, "text": {"status": "generated", "div": "<div> </div>"},
         "contained": [{**org, "meta": {"versionId": "1"}, "contained": [{"resourceType": "Basic"}]}]},
        {"resourceType": "CareTeam", "participant": [{"member": {"reference": "Organization/1"},
                                                      "onBehalfOf": {"reference": "Organization/2"}}]},
        {"resourceType": "Task", "status": "requested", "intent": "order", "authoredOn": "2026-01-05",
         "lastModified": "2026-01-04", "input": [{"type": {"text": "x"}, "valueQuantity": {"value": 1, "code": "g"}},
                                                 {"type": {"text": "y"}, "valueAttachment": {"data": "aGk="}}]},
        {"resourceType": "AuditEvent", "entity": [{"name": "x", "query": "eA=="}]},
    ]
    for content in cases + _resources():
        rtype = content["resourceType"]
        every = invariant_issues(rtype, content, walk(rtype, content).nodes)
        assert invariant_issues(rtype, content, walk(rtype, content, INVARIANT_PATHS).nodes) == every, rtype
    assert all(invariant_issues(c["resourceType"], c, walk(c["resourceType"], c).nodes) for c in cases)


# -- our extensions: from the walk's list or by searching the JSON --------------------------------------------
def _ext(name: str, **value: Any) -> dict[str, Any]:
    return {"url": SD + name, **(value or {"valueBoolean": True})}


REASON = {"valueCodeableConcept": {"coding": [{"system": CS + "status-reason", "code": "plan-ended"}]}}


@pytest.mark.parametrize(
    "content",
    [
        {**FLAG, "extension": [_ext("status-reason", **REASON), _ext("nope")]},
        {**FLAG, "modifierExtension": [_ext("status-reason", **REASON)]},
        {**FLAG, "_status": {"extension": [_ext("status-reason", **REASON)]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101",
                              "extension": [_ext("parental-responsibility")]}]}},
        {**FLAG, "extension": [{"url": "http://example.org/x", "extension": [_ext("nope")]},
                               {"url": "http://example.org/y", "valueReference": {
                                   "reference": "Patient/1", "extension": [_ext("nope")]}}]},
        {**FLAG, "contained": [{"resourceType": "RelatedPerson", "id": "rp", "patient": {"reference": "Patient/1"},
                                "extension": [_ext("parental-responsibility"), _ext("status-reason", **REASON)],
                                "name": [{"given": ["Jo"], "_given": [{"extension": [_ext("household-member")]}]}]}]},
        {"resourceType": "RelatedPerson", "patient": {"reference": "Patient/1"},
         "extension": [_ext("significant-individual"), _ext("parental-responsibility", valueString="x")]},
        {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990000018",
                                                    "extension": [_ext("subscription-secret", valueString="x")]}]},
    ],
)
def test_extensions_from_the_walk_are_checked_as_a_search_would(content: dict[str, Any]) -> None:
    found = walk(content["resourceType"], content)
    assert found.issues == []
    engine = get_engine()
    searched = engine.extension_issues(content)
    assert searched == engine.extension_issues(content, found.extensions)
    assert profile_issues(content["resourceType"], content, extensions=found.extensions) == profile_issues(
        content["resourceType"], content)
    assert searched or "http://example.org/x" in str(content)  # each case but the unchecked ones has findings


def test_examples_need_no_search_for_extensions_of_ours_they_do_not_carry() -> None:
    for _, content in get_store().examples:
        found = walk(content["resourceType"], content)
        assert profile_issues(content["resourceType"], content, extensions=found.extensions) == profile_issues(
            content["resourceType"], content), content["id"]
