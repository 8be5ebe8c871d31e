"""Search query parsing without a database: values, modifiers, chains, result parameters, errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.errors import BadRequest
from app.fhir.search.criteria import Criterion
from app.fhir.search.dates import MAX, parse_range
from app.fhir.search.definitions import REGISTRY, make_indexer, params_for
from app.fhir.search.params import DateValue, Include, RefValue, TokenValue, parse_search
from app.fhir.search.values import split_values

BASE = "http://127.0.0.1:8080/fhir"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def parse(rtype: str, query: str | list[tuple[str, str]], **kw: int):
    pairs = query if isinstance(query, list) else [tuple(p.split("=", 1)) for p in query.split("&")]
    return parse_search(rtype, pairs, base=BASE, **kw)  # type: ignore[arg-type]


def one(rtype: str, query: str) -> Criterion:
    req = parse(rtype, query)
    assert len(req.criteria) == 1, req.criteria
    return req.criteria[0]


def outcome(exc: pytest.ExceptionInfo[BadRequest]) -> list[dict]:
    return exc.value.outcome()["issue"]


# -- values ----------------------------------------------------------------------------------

def test_token_forms() -> None:
    assert one("Flag", "status=active").values == (TokenValue(None, "active", False),)
    assert one("Patient", f"identifier={NHS}|9990000018").values == (TokenValue(NHS, "9990000018", True),)
    assert one("Patient", "identifier=|9990000018").values == (TokenValue(None, "9990000018", True),)
    assert one("Patient", f"identifier={NHS}|").values == (TokenValue(NHS, None, True),)
    assert one("Flag", "status:not=active").modifier == "not"


def test_or_values_and_escaping() -> None:
    assert one("Flag", "status=active,inactive").values == (
        TokenValue(None, "active", False), TokenValue(None, "inactive", False))
    assert one("Patient", "family=Smith\\,Jones").values == ("Smith,Jones",)
    assert one("Patient", "identifier=a\\|b|c").values == (TokenValue("a|b", "c", True),)
    assert split_values("a\\,b,c\\\\,d") == ["a\\,b", "c\\\\", "d"]
    assert one("Patient", "family=a,,b").values == ("a", "b")


def test_and_across_repeated_parameters() -> None:
    req = parse("Flag", "status=active&status=inactive")
    assert [c.values for c in req.criteria] == [
        (TokenValue(None, "active", False),), (TokenValue(None, "inactive", False),)]


def test_date_prefixes_and_precision() -> None:
    c = one("Flag", "date=ge2026-01")
    assert c.values == (DateValue("ge", datetime(2026, 1, 1), datetime(2026, 2, 1)),)
    c = one("Communication", "sent=2026-01-05T10:00:00+01:00")
    assert c.values == (DateValue("eq", datetime(2026, 1, 5, 9), datetime(2026, 1, 5, 9, 0, 1)),)
    # an unencoded '+' arrives as a space
    assert one("Communication", "sent=2026-01-05T10:00:00 01:00").values == c.values
    assert one("Flag", "_lastUpdated=lt2026").values == (DateValue("lt", datetime(2026, 1, 1), datetime(2027, 1, 1)),)


def test_date_ranges_clamp_at_the_end_of_the_calendar() -> None:
    assert parse_range("9999-12-31") == (datetime(9999, 12, 31), MAX)
    assert parse_range("9999") == (datetime(9999, 1, 1), MAX)
    assert parse_range("2026-02-30") is None
    assert parse_range("2026-1-5") is None


def test_reference_forms() -> None:
    assert one("Flag", "patient=Patient/p1").values == (RefValue("Patient", "p1", None),)
    assert one("Flag", "patient=p1").values == (RefValue(None, "p1", None),)
    assert one("Flag", f"patient={BASE}/Patient/p1").values == (RefValue("Patient", "p1", None),)
    assert one("Flag", "author=https://other.example/fhir/Organization/o1").values == (
        RefValue(None, None, "https://other.example/fhir/Organization/o1"),)
    c = one("Flag", "subject:Patient=p1")
    assert (c.type_hint, c.values) == ("Patient", (RefValue(None, "p1", None),))
    c = one("Flag", f"patient:identifier={NHS}|9990000018")
    assert (c.modifier, c.values) == ("identifier", (TokenValue(NHS, "9990000018", True),))


def test_chains() -> None:
    c = one("Flag", f"patient.identifier={NHS}|9990000018")
    assert [(t, x.name, x.values) for t, x in c.chain] == [
        ("Patient", "identifier", (TokenValue(NHS, "9990000018", True),))]
    c = one("Flag", "subject:Patient.name=smith")
    assert c.type_hint == "Patient" and [t for t, _ in c.chain] == ["Patient"]
    # an untargeted reference chains into every type that has the parameter
    c = one("Flag", "author.name=Leeds")
    assert [t for t, _ in c.chain] == ["Patient", "Practitioner", "Organization", "RelatedPerson"]
    # two levels
    c = one("Task", "focus:Communication.patient.identifier=9990000018")
    assert c.chain[0][0] == "Communication" and c.chain[0][1].chain[0][0] == "Patient"


def test_missing() -> None:
    c = one("Flag", "encounter:missing=true")
    assert (c.modifier, c.missing, c.values) == ("missing", True, ())


def test_unknown_parameters_are_collected() -> None:
    req = parse("Flag", "foo=1&status=active&_has:Flag:patient:status=active")
    assert req.unknown == ["foo", "_has:Flag:patient:status"]
    assert req.query == [("status", "active")]


# -- result parameters --------------------------------------------------------------------

def test_result_parameters() -> None:
    req = parse("Flag", "_count=600&_offset=10&_sort=-date,_id&_total=accurate&_summary=data&_elements=Flag.status,code")
    assert (req.count, req.offset, req.sort, req.total, req.summary, req.elements) == (
        500, 10, [("date", True), ("_id", False)], "accurate", "data", ["status", "code"])
    assert parse("Flag", "_count=0").count == 0
    assert parse("Flag", "status=active").count == 50


def test_includes() -> None:
    req = parse("Flag", "_include=Flag:author&_include=Flag:patient:Patient&_revinclude=Task:focus"
                        "&_include:iterate=PractitionerRole:organization&_include=*&_revinclude=*")
    assert req.include == [
        Include("Flag", "author", None), Include("Flag", "patient", "Patient"),
        Include("PractitionerRole", "organization", None, True), Include("Flag", "*", None)]
    assert req.revinclude == [Include("Task", "focus", None), Include("*", "*", None)]


@pytest.mark.parametrize(
    ("query", "issue"),
    [
        ("date=2026-13-01", ("SF-0402: Invalid date value '2026-13-01' for parameter 'date'", "date")),
        ("date=xx2026", (("SF-0402: Invalid prefix 'xx' in 'xx2026' for parameter 'date' "
                         "(allowed: eq, ne, gt, lt, ge, le, sa, eb, ap)"), "date")),
        ("status:exact=active", (("SF-0404: Modifier ':exact' is not supported on token parameter 'status' "
                                 "(supported: :missing, :not)"), "status:exact")),
        ("patient:below=x", (("SF-0404: Modifier ':below' is not supported on reference parameter 'patient' "
                             "(supported: :missing, :identifier, :[type])"), "patient:below")),
        ("_lastUpdated:missing=true", (("SF-0404: Modifier ':missing' is not supported on _lastUpdated "
                                       "'_lastUpdated' (supported: none)"), "_lastUpdated:missing")),
        ("status=", ("SF-0403: Empty value for parameter 'status'", "status")),
        ("status.name=x", ("SF-0416: Only reference parameters can be chained ('status.name')", "status.name")),
        ("patient.foo=x", ("SF-0407: Unknown chained parameter 'foo' in 'patient.foo'", "patient.foo")),
        ("encounter:missing=maybe", ("SF-0417: ':missing' takes true or false, not 'maybe'", "encounter:missing")),
        ("_count=ten", ("SF-0408: '_count' must be an integer, not 'ten'", "_count")),
        ("_count=-1", ("SF-0408: '_count' must be at least 0", "_count")),
        ("_offset=99999999999", ("SF-0408: '_offset' must be at most 2147483647", "_offset")),
        ("_sort=author", ("SF-0410: Cannot sort on 'author' (a reference of Flag)", "_sort")),
        ("_sort=foo", ("SF-0410: Cannot sort on 'foo' (not a search parameter of Flag)", "_sort")),
        ("_include=Flag", ("SF-0418: Invalid _include value 'Flag': expected Type:parameter[:targetType]", "_include")),
        ("_include=Flag:status", (("SF-0418: Invalid _include value 'Flag:status': 'status' is not a reference "
                                  "parameter of Flag"), "_include")),
        ("_include=Task:owner", (("SF-0418: Invalid _include value 'Task:owner': the source type must be Flag "
                                 "(or use _include:iterate)"), "_include")),
        ("_summary=yes", ("SF-0411: _summary=yes is not supported (supported: true, text, data, count, false)",
                          "_summary")),
        ("_total=all", ("SF-0419: _total must be none, estimate or accurate, not 'all'", "_total")),
    ],
)
def test_invalid_values_name_the_parameter(query: str, issue: tuple[str, str]) -> None:
    with pytest.raises(BadRequest) as exc:
        parse("Flag", [tuple(query.split("=", 1))])  # type: ignore[list-item]
    assert outcome(exc) == [{"severity": "error", "code": "invalid", "diagnostics": issue[0], "expression": [issue[1]]}]


# -- definitions --------------------------------------------------------------------------

CONTRACT = {
    "Flag": "patient subject status category code date author identifier",
    "Communication": "patient subject recipient sender category status sent received based-on encounter identifier",
    "Encounter": "patient subject class status date service-provider identifier",
    "Task": "owner focus status code patient authored-on period",
    "DocumentReference": "patient subject type category date author custodian",
    "CareTeam": "patient subject participant status category",
    "AuditEvent": "patient entity agent date type action",
}


def test_every_contract_parameter_is_defined() -> None:
    for rtype, names in CONTRACT.items():
        assert set(names.split()) <= set(params_for(rtype)), rtype
    for rtype, params in REGISTRY.items():
        assert {"_security", "_tag", "_profile"} <= set(params), rtype


def test_expressions_follow_the_r4_registry() -> None:
    assert params_for("Flag")["patient"].expression == "Flag.subject.where(resolve() is Patient)"
    assert params_for("AuditEvent")["patient"].expression == (
        "AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)")
    assert params_for("Patient")["phone"].expression == "Patient.telecom.where(system='phone')"
    assert params_for("Task")["period"].expression == "Task.executionPeriod"


def test_indexer_reads_every_datatype() -> None:
    rows = make_indexer(BASE)("Patient", {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": "9990000018"}],
        "active": True,
        "name": [{"family": "Ngọc", "given": ["Amy", "Jo"]}],
        "telecom": [{"system": "phone", "value": "0113"}, {"system": "email", "value": "a@b"}],
        "address": [{"line": ["1 Road"], "postalCode": "LS1 1AA"}],
        "birthDate": "2020-02-03",
        "managingOrganization": {"reference": f"{BASE}/Organization/o1"},
        "generalPractitioner": [{"identifier": {"system": "ods", "value": "G1"}, "type": "Practitioner"}],
        "meta": {"tag": [{"system": "s", "code": "t"}], "profile": ["http://p"]},
    })
    assert ("identifier", NHS, "9990000018") in rows.tokens
    assert ("active", None, "true") in rows.tokens
    assert [r for r in rows.tokens if r[0] in ("phone", "email")] == [("phone", "phone", "0113"), ("email", "email", "a@b")]
    assert ("family", "ngoc", "Ngọc") in rows.strings
    assert ("address-postalcode", "ls1 1aa", "LS1 1AA") in rows.strings
    assert ("birthdate", datetime(2020, 2, 3), datetime(2020, 2, 4)) in rows.dates
    assert rows.references == [
        ("organization", "Organization", "o1", None, None, None),
        ("general-practitioner", "Practitioner", None, None, "ods", "G1"),
    ]
    assert ("_tag", "s", "t") in rows.tokens and ("_profile", None, "http://p") in rows.tokens


def test_patient_parameter_skips_references_to_other_types() -> None:
    rows = make_indexer(BASE)("AuditEvent", {
        "resourceType": "AuditEvent",
        "agent": [{"who": {"reference": "Practitioner/x"}}, {"who": {"reference": "Patient/p"}}],
        "entity": [{"what": {"reference": "https://elsewhere.example/fhir/Group/g"}}],
    })
    assert [r for r in rows.references if r[0] == "patient"] == [("patient", "Patient", "p", None, None, None)]


# -- SQL generation ---------------------------------------------------------------------------

def _sql(query: str) -> str:
    from sqlalchemy.dialects import sqlite

    from app.search.sql import page_query

    return " ".join(str(page_query(parse("Flag", query)).compile(dialect=sqlite.dialect())).split())


def test_selective_criteria_drive_and_the_rest_probe() -> None:
    sql = _sql(f"patient:identifier={NHS}|9990000018&status=active&_include=Flag:author")
    # the identifier drives (both halves of the contract's :identifier, as one UNION), status is probed
    assert "resource.pk IN (SELECT idx_reference.resource_pk FROM idx_reference WHERE" in sql
    assert "UNION ALL SELECT idx_reference.resource_pk FROM idx_reference" in sql
    assert "(idx_reference.target_type, idx_reference.target_id) IN (SELECT resource.res_type, resource.res_id" in sql
    assert "EXISTS (SELECT * FROM idx_token WHERE idx_token.resource_pk = resource.pk" in sql
    assert sql.endswith("ORDER BY resource.pk ASC LIMIT ? OFFSET ?")
    negated = _sql("status:not=active&encounter:missing=true")
    assert negated.count("NOT (EXISTS (SELECT * FROM") == 2 and " IN (" not in negated
    assert "ORDER BY (SELECT min(idx_date.low)" in _sql("_sort=date")
