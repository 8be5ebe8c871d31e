"""Index extraction (app/fhir/search/extract.py, definitions.make_indexer) on awkward JSON: what the
compiled paths and the per-write indexer must give, row for row and in order."""

from __future__ import annotations

from datetime import datetime

from app.fhir.search.dates import MAX, MIN
from app.fhir.search.definitions import index_values, make_indexer, params_for, reference_values
from app.fhir.search.extract import date_ranges, normalize, references, strings, tokens, walk

BASE = "http://127.0.0.1:8080/fhir"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def test_walk_flattens_arrays_in_document_order_and_drops_nulls() -> None:
    node = {"a": [{"b": [1, [2, None]]}, [{"b": 3}, "not an element"], None, {"b": None}, {"c": 4}, {"b": {"d": 5}}]}
    assert walk(node, ("a", "b")) == [1, 2, 3, {"d": 5}]
    assert walk(node, ("a", "b", "d")) == [5]
    assert walk([node, [node], None, 7], ("a", "b", "d")) == [5, 5]  # a list of nodes: each of them
    assert walk([1, [None, "x"]], ()) == [1, "x"]
    assert walk("scalar", ("a",)) == [] and walk({"a": None}, ("a",)) == []


def test_walk_choice_and_where_segments() -> None:
    node = {"valueString": "s", "value": 1, "valuex": 2, "valueCoding": [{"code": "c"}], "other": 3}
    assert walk(node, ("value[x]",)) == ["s", {"code": "c"}]
    assert walk({"extension": [node, {"valueBoolean": False}]}, ("extension", "value[x]", "code")) == ["c"]
    phone, email = {"system": "phone", "value": "0113"}, {"system": "email", "value": "a@b"}
    assert walk({"telecom": [email, phone, [phone], "x"]}, ("telecom[system=phone]", "value")) == ["0113"]
    assert walk({"telecom": phone}, ("telecom[system=phone]",)) == [phone]  # one element, not an array


def test_datatype_extractors() -> None:
    assert tokens(True) == [(None, "true")] and tokens(5) == []
    assert tokens({"coding": [{"system": "s", "code": 7}, {"display": "no code"}, "x", {"system": "s"}]}) == [
        ("s", "7"), ("s", None)]
    assert tokens({"coding": "not an array", "code": "c"}) == []  # a CodeableConcept with a bad coding
    assert tokens({"system": 3, "value": "v" * 600}) == [(None, "v" * 512)]
    assert strings({"family": "F", "given": ["A", ["B", None, 1]], "line": None, "city": {"x": 1}}) == ["F", "A", "B"]
    assert normalize("ÅNGSTRÖM ﬁle") == "angstrom file" and normalize("MiXeD") == "mixed"
    assert normalize("X" * 600) == "x" * 512
    assert date_ranges({"end": "2024"}) == [(MIN, datetime(2025, 1, 1))]
    assert date_ranges({"start": 5, "end": None}) == [(MIN, MAX)]
    assert date_ranges("2024-02-30") == [] and date_ranges({"text": "x"}) == []
    assert references({"reference": "#c1", "identifier": {}}, BASE) == []
    assert references({"reference": "abc", "type": "Patient"}, BASE) == [("Patient", "abc", None, None, None)]
    assert references(f"{BASE}/Organization/o1/_history/2", BASE) == [("Organization", "o1", None, None, None)]
    assert references({"identifier": {"system": NHS, "value": 9990000018}, "type": 3}, BASE) == [
        (None, None, None, NHS, None)]


def test_indexer_rows_of_a_stored_flag_in_order() -> None:
    """`patient` and `subject` read the same element (extracted once), each with its own rows."""
    flag = {
        "resourceType": "Flag", "id": "f1",
        "meta": {"versionId": "1", "lastUpdated": "2026-01-05T09:00:00.000+00:00", "security": [
            {"system": CONF, "code": "R", "display": "restricted"}, {"system": ACT, "code": "SEX"}]},
        "status": "active",
        "category": [{"coding": [{"system": "cat", "code": "fgm"}, {"system": "hl7", "code": "safety"}]}],
        "code": {"coding": [{"system": "sct", "code": "902961000000107"}], "text": "FGM"},
        "subject": {"reference": "Patient/p1", "identifier": {"system": NHS, "value": "9990000018"}},
        "period": {"start": "2026-01-05"},
        "author": {"reference": "https://elsewhere.example/fhir/Organization/o9"},
        "encounter": {"reference": "Patient/p1"},  # the wrong type: not indexed as `encounter`
    }
    rows = make_indexer(BASE)("Flag", flag)
    assert rows.tokens == [
        ("status", None, "active"), ("category", "cat", "fgm"), ("category", "hl7", "safety"),
        ("code", "sct", "902961000000107"), ("_security", CONF, "R"), ("_security", ACT, "SEX"),
    ]
    assert rows.references == [
        ("patient", "Patient", "p1", None, NHS, "9990000018"),
        ("subject", "Patient", "p1", None, NHS, "9990000018"),
        ("author", None, None, "https://elsewhere.example/fhir/Organization/o9", None, None),
    ]
    assert rows.dates == [("date", datetime(2026, 1, 5), MAX)]  # an open period runs on
    assert rows.strings == []
    params = params_for("Flag")
    assert index_values(params["encounter"], flag, BASE) == []
    assert reference_values(params["patient"], flag, BASE) == [("Patient", "p1", None, NHS, "9990000018")]
    assert make_indexer(BASE)("Unknown", flag).tokens == []


def test_indexer_keeps_each_value_once_per_parameter() -> None:
    event = {
        "resourceType": "AuditEvent",
        "agent": [{"who": {"reference": "Patient/p"}, "role": [{"coding": [{"system": "r", "code": "x"}]}] * 2}],
        "entity": [{"what": {"reference": "Patient/p"}}, {"what": {"reference": "Flag/f/_history/1"}}],
    }
    rows = make_indexer(BASE)("AuditEvent", event)
    assert [r for r in rows.references if r[0] in ("patient", "entity", "agent")] == [
        ("patient", "Patient", "p", None, None, None),
        ("entity", "Patient", "p", None, None, None),
        ("entity", "Flag", "f", None, None, None),
        ("agent", "Patient", "p", None, None, None),
    ]
    assert [r for r in rows.tokens if r[0] == "agent-role"] == [("agent-role", "r", "x")]
