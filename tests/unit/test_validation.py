"""The validation pipeline without HTTP: what fhir.resources lets through and we refuse (bindings,
JSON types, lexical forms, unknown elements, invariants), the exact issues, and no false alarms on
realistic resources of all 14 types. Test-range NHS numbers only."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import FhirError
from app.fhir.bindings import MIME_TYPE_PATHS, REQUIRED
from app.fhir.elements import primitive_problem
from app.fhir.resources import element_defs, model_class
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.fhir.validation import validate_resource

NHS = "https://fhir.nhs.uk/Id/nhs-number"
XHTML = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Amy Smith</p></div>'
# a valid SafeguardingFlag (fhir_profiles/): one category from our CodeSystem, its code, an author
FLAG = {"resourceType": "Flag", "status": "active",
        "category": [{"coding": [{"system": "https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category",
                                  "code": "child-protection-plan"}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101"}], "text": "x"},
        "subject": {"reference": "Patient/1"}, "author": {"reference": "Organization/1"}}
EXT = "https://fhir.safeflag.example/StructureDefinition/"

VALID: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1",
     "meta": {"profile": ["https://fhir.safeflag.example/StructureDefinition/safeguarding-patient"]},
     "language": "en-GB", "text": {"status": "generated", "div": XHTML},
     "identifier": [{"use": "official", "system": NHS, "value": "9990000018"}], "active": True,
     "name": [{"use": "official", "family": "Smith", "given": ["Amy", "Jo"], "_given": [None, {"id": "g2"}]}],
     "telecom": [{"system": "phone", "value": "01632 960000", "use": "home"}], "gender": "female",
     "birthDate": "2020-02-29", "address": [{"use": "home", "type": "both", "postalCode": "LS1 1AA"}],
     "contact": [{"name": {"family": "Smith"}, "gender": "female"}], "multipleBirthInteger": 2,
     "link": [{"other": {"reference": "RelatedPerson/r1"}, "type": "seealso"}],
     "managingOrganization": {"reference": "#org"},
     "contained": [{"resourceType": "Organization", "id": "org", "name": "Leeds 0-19"}]},
    {"resourceType": "Practitioner", "name": [{"family": "Jones"}], "gender": "unknown"},
    {"resourceType": "PractitionerRole", "practitioner": {"reference": "Practitioner/1"},
     "availableTime": [{"daysOfWeek": ["mon", "fri"], "availableStartTime": "09:00:00"}]},
    {"resourceType": "Organization", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                                     "value": "RR8"}],
     "telecom": [{"system": "phone", "value": "0113 000 0000", "use": "work"}]},
    {"resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/1"},
     "participant": [{"member": {"reference": "Practitioner/1"}, "onBehalfOf": {"reference": "Organization/1"},
                      "period": {"start": "2026-01-01", "end": "2026-01-01"}}]},
    {"resourceType": "RelatedPerson", "patient": {"reference": "Patient/1"}, "gender": "male",
     "extension": [{"url": EXT + "parental-responsibility", "valueBoolean": True}]},
    {"resourceType": "Encounter", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/"
                                                                  "v3-ActCode", "code": "EMER"},
     "subject": {"reference": "Patient/1"},
     "period": {"start": "2026-01-05T09:00:00+00:00", "end": "2026-01-05T10:30:00Z"},
     "length": {"value": 90, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
     "hospitalization": {"dischargeDisposition": {"coding": [{"system": "http://snomed.info/sct",
                                                              "code": "1066301000000103"}]}},
     "location": [{"location": {"reference": "Location/1"}, "status": "completed"}]},
    {**FLAG, "period": {"start": "2026-01-01"}, "author": {"reference": "Organization/1"}},
    {"resourceType": "Communication", "status": "completed", "priority": "urgent", "sent": "2026-01-05T09:00:01Z",
     "payload": [{"contentReference": {"reference": "DocumentReference/1"}}, {"contentString": "ED attendance"}]},
    {"resourceType": "DocumentReference", "status": "current", "docStatus": "final",
     "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/0"}}],
     "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBERi0xLjQK", "size": 9,
                                 "hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk=", "language": "en"}}]},
    {"resourceType": "Binary", "contentType": "text/plain; charset=utf-8", "data": "aGVsbG8gd29ybGQ="},
    {"resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
     "authoredOn": "2026-01-05T09:00:00Z", "lastModified": "2026-01-05T09:00:00Z",
     "restriction": {"period": {"end": "2026-01-06T17:00:00Z"}}},
    {"resourceType": "Subscription", "status": "requested", "reason": "ED attendances",
     "criteria": "https://fhir.safeflag.example/SubscriptionTopic/ed-attendance",
     "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9000/hook", "payload": "application/fhir+json",
                 "_payload": {"extension": [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/"
                                                    "StructureDefinition/backport-payload-content",
                                             "valueCode": "id-only"}]}}},
    {"resourceType": "AuditEvent", "type": {"code": "rest"}, "action": "R", "outcome": "0",
     "recorded": "2026-01-05T09:00:01.123+00:00", "agent": [{"requestor": True, "network": {"address": "127.0.0.1",
                                                                                           "type": "2"}}],
     "source": {"observer": {"display": "SafeFlag"}}, "entity": [{"what": {"reference": "Flag/1"}}]},
]


def issues_of(resource_type: str, content: Any) -> tuple[int, list[dict[str, Any]]]:
    with pytest.raises(FhirError) as raised:
        validate_resource(resource_type, content)
    return raised.value.status, [i.to_fhir() for i in raised.value.issues]


def one(code: str, diagnostics: str, expression: str) -> list[dict[str, Any]]:
    return [{"severity": "error", "code": code, "diagnostics": diagnostics, "expression": [expression]}]


def test_valid_resources_of_every_type_pass() -> None:
    assert sorted({r["resourceType"] for r in VALID}) == sorted(SUPPORTED_TYPES)
    for resource in VALID:
        assert validate_resource(resource["resourceType"], resource) == [], resource["resourceType"]


# -- required bindings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resource", "expression", "path"),
    [
        ({**FLAG, "status": "bogus"}, "Flag.status", "Flag.status"),
        ({"resourceType": "Patient", "gender": "f"}, "Patient.gender", "Patient.gender"),
        ({"resourceType": "Encounter", "status": "finished", "class": {"code": "EMER"},
          "statusHistory": [{"status": "done", "period": {"start": "2026"}}]},
         "Encounter.statusHistory[0].status", "Encounter.statusHistory.status"),
        ({"resourceType": "Task", "status": "requested", "intent": "order", "priority": "high"},
         "Task.priority", "Task.priority"),
        ({"resourceType": "Patient", "identifier": [{"use": "primary", "value": "1"}]},
         "Patient.identifier[0].use", "Identifier.use"),
        ({"resourceType": "Subscription", "status": "active", "reason": "x", "criteria": "x",
          "contact": [{"system": "pager", "value": "1", "use": "office"}], "channel": {"type": "rest-hook"}},
         "Subscription.contact[0].use", "ContactPoint.use"),
        ({"resourceType": "Patient", "text": {"status": "draft", "div": XHTML}}, "Patient.text.status",
         "Narrative.status"),
        ({"resourceType": "Patient", "extension": [{"url": "http://x", "valueAge": {"value": 1, "comparator": "~"}}]},
         "Patient.extension[0].valueAge.comparator", "Age.comparator"),
        ({"resourceType": "Patient", "extension": [{"url": "http://x", "valueTiming": {"repeat": {"when": ["LUNCH"]}}}]},
         "Patient.extension[0].valueTiming.repeat.when[0]", "Timing.repeat.when"),
        ({"resourceType": "AuditEvent", "type": {"code": "rest"}, "action": "X", "recorded": "2026-01-05T09:00:00Z",
          "agent": [{"requestor": True}], "source": {"observer": {"display": "x"}}}, "AuditEvent.action",
         "AuditEvent.action"),
    ],
)
def test_required_binding_violations(resource: dict[str, Any], expression: str, path: str) -> None:
    status, issues = issues_of(resource["resourceType"], resource)
    [bad] = [i for i in issues if i["expression"] == [expression]]
    allowed = ", ".join(sorted(REQUIRED[path]))
    value: Any = resource  # the offending code, read back along the expression
    for part in expression.replace("]", "").replace("[", ".").split(".")[1:]:
        value = value[int(part)] if part.isdigit() else value[part]
    assert (status, bad) == (400, {
        "severity": "error", "code": "code-invalid", "expression": [expression],
        "diagnostics": f"SF-0104: '{value}' is not in the required value set for {path} ({allowed})",
    })


def test_syntax_only_bindings() -> None:
    assert issues_of("Binary", {"resourceType": "Binary", "contentType": "pdf"}) == (400, one(
        "code-invalid", "SF-0104: 'pdf' is not a MIME type (BCP-13) for Binary.contentType", "Binary.contentType"))
    assert issues_of("Patient", {"resourceType": "Patient", "language": "en_GB"}) == (400, one(
        "code-invalid", "SF-0104: 'en_GB' is not a language tag (BCP-47) for Patient.language", "Patient.language"))
    money = {"resourceType": "Patient", "extension": [{"url": "http://x", "valueMoney": {"currency": "pounds"}}]}
    assert issues_of("Patient", money) == (400, one(
        "code-invalid", "SF-0104: 'pounds' is not an ISO 4217 currency code for Money.currency",
        "Patient.extension[0].valueMoney.currency"))


def _resolve(path: str) -> Any:
    head, *parts = path.split(".")
    type_name, element = head, None
    for part in parts:
        element = element_defs(type_name)[part]
        type_name = element.type
    return element


def test_binding_table_names_real_code_elements_and_agrees_with_the_models() -> None:
    for path, codes in REQUIRED.items():
        element = _resolve(path)
        assert element is not None and element.type == "code", path
        model_type, name = path.rsplit(".", 1)
        parent = _resolve(model_type).type if "." in model_type else model_type
        extra = model_class(parent).model_fields[name].json_schema_extra or {}
        enum = set(extra.get("enum_values") or ()) - {"+"}  # fhir.resources truncates long lists with "+"
        assert enum <= codes, path
    for path in MIME_TYPE_PATHS:
        assert _resolve(path).type == "code", path


def _enum_elements(type_name: str, path: str, seen: set[str]) -> list[str]:
    """Definition paths of every element with listed codes in a type and its backbone elements."""
    out = []
    for name, element in element_defs(type_name).items():
        extra = model_class(type_name).model_fields.get(name)
        if extra is not None and isinstance(extra.json_schema_extra, dict) and "enum_values" in extra.json_schema_extra:
            out.append(f"{path}.{name}")
        if element.nested and element.type not in seen:
            out += _enum_elements(element.type, f"{path}.{name}", seen | {element.type})
    return out


def test_every_coded_element_of_our_types_and_their_data_types_is_bound() -> None:
    paths = [p for t in SUPPORTED_TYPES for p in _enum_elements(t, t, {t})]
    data_types = ("Identifier", "HumanName", "ContactPoint", "Address", "Narrative", "Timing", "RelatedArtifact",
                  "TriggerDefinition", "DataRequirement", "ParameterDefinition", "Contributor")
    paths += [p for t in data_types for p in _enum_elements(t, t, {t})]
    # Expression.language is extensible in R4 (https://hl7.org/fhir/R4/metadatatypes.html#Expression)
    assert sorted(set(paths) - set(REQUIRED)) == []
    assert len(paths) > 30


# -- JSON types and lexical forms of primitives -------------------------------------------------------
@pytest.mark.parametrize(
    ("type_name", "value", "problem"),
    [
        ("boolean", "true", "'true' is not a boolean (true or false)"),
        ("boolean", 1, "1 is not a boolean (true or false)"),
        ("integer", "2", "'2' is not a JSON number (integer)"),
        ("integer", True, "true is not a JSON number (integer)"),
        ("integer", 2.0, "2.0 is not an integer (integer)"),
        ("integer", 2**31, "2147483648 is out of range for integer (-2147483648..2147483647)"),
        ("positiveInt", 0, "0 is out of range for positiveInt (1..2147483647)"),
        ("unsignedInt", -1, "-1 is out of range for unsignedInt (0..2147483647)"),
        ("decimal", "1.5", "'1.5' is not a JSON number (decimal)"),
        ("string", 5, "5 is not a JSON string (string)"),
        ("string", "a\x01b", "A string may not contain control characters"),
        ("markdown", "x" * (2**20 + 1), "A markdown may not exceed 1 MB (1048576 characters)"),
        ("code", "a  b", "'a  b' is not a valid code"),
        ("id", "a" * 65, f"'{'a' * 65}' is not a valid id"),
        ("uri", "not a uri", "'not a uri' is not a valid uri"),
        ("oid", "1.2.3", "'1.2.3' is not a valid oid"),
        ("uuid", "urn:uuid:ABC", "'urn:uuid:ABC' is not a valid uuid"),
        ("base64Binary", "!!!", "'!!!' is not a valid base64Binary"),
        ("date", "2026-1-5", "'2026-1-5' is not a valid date"),
        ("date", "2026-02-29", "'2026-02-29' is not a calendar date"),
        ("dateTime", "2026-01-05T09:00:00", "'2026-01-05T09:00:00' is not a valid dateTime"),
        ("dateTime", "2026-01-05T24:00:00Z", "'2026-01-05T24:00:00Z' is not a valid dateTime"),
        ("instant", "2026-01-05", "'2026-01-05' is not a valid instant"),
        ("time", "9:00", "'9:00' is not a valid time"),
    ],
)
def test_primitive_problems(type_name: str, value: Any, problem: str) -> None:
    assert primitive_problem(type_name, value) == problem


@pytest.mark.parametrize(
    ("type_name", "value"),
    [("boolean", False), ("integer", -5), ("decimal", 1), ("decimal", 0.1), ("date", "2026"), ("date", "2026-02"),
     ("dateTime", "2026-01-05T09:00:00.123+14:00"), ("dateTime", "2026-06-30T23:59:60Z"),
     ("instant", "2026-01-05T09:00:00Z"), ("time", "23:59:59.5"),
     ("uuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
     ("code", "text/plain; charset=utf-8"), ("string", "tab\tand\nnewline"), ("base64Binary", "aGk= ")],
)
def test_primitive_values_accepted(type_name: str, value: Any) -> None:
    assert primitive_problem(type_name, value) is None


def test_json_type_errors_are_reported_where_they_are() -> None:
    patient = {"resourceType": "Patient", "active": "true", "multipleBirthInteger": 2.0}
    assert issues_of("Patient", patient) == (400, [
        *one("value", "SF-0109: 'true' is not a boolean (true or false) at Patient.active", "Patient.active"),
        *one("value", "SF-0109: 2.0 is not an integer (integer) at Patient.multipleBirthInteger",
             "Patient.multipleBirthInteger"),
    ])


# -- unknown elements and structure ---------------------------------------------------------------------
def test_unknown_elements_including_python_names_and_r4b_types() -> None:
    patient = {"resourceType": "Patient", "foo": 1, "gender__ext": {"id": "x"}, "fhir_comments": ["x"],
               "name": [{"family": "x", "resourceType": "HumanName"}],
               "extension": [{"url": "http://x", "valueCodeableReference": {"concept": {"text": "x"}}}]}
    assert issues_of("Patient", patient) == (400, [
        *one("structure", "SF-0108: Unknown element 'foo' in Patient", "Patient.foo"),
        *one("structure", "SF-0108: Unknown element 'gender__ext' in Patient", "Patient.gender__ext"),
        *one("structure", "SF-0108: Unknown element 'fhir_comments' in Patient", "Patient.fhir_comments"),
        *one("structure", "SF-0108: Unknown element 'resourceType' in HumanName", "Patient.name[0].resourceType"),
        *one("structure", "SF-0108: Unknown element 'valueCodeableReference' in Extension",
             "Patient.extension[0].valueCodeableReference"),
    ])


def test_arrays_and_objects_in_the_wrong_place() -> None:
    assert issues_of("Patient", {"resourceType": "Patient", "name": {"family": "x"}}) == (400, one(
        "structure", "SF-0108: Element 'name' must be an array", "Patient.name"))
    assert issues_of("Flag", {**FLAG, "code": [{"text": "x"}]}) == (400, one(
        "structure", "SF-0108: Element 'code' must be a single value, not an array", "Flag.code"))
    assert issues_of("Flag", {**FLAG, "code": "x"}) == (400, one(
        "structure", "SF-0108: Flag.code must be a JSON object (CodeableConcept)", "Flag.code"))


def test_primitive_extension_arrays_align_with_their_values() -> None:
    name = {"given": ["Amy", "Jo"], "_given": [None, None, {"id": "x"}]}
    assert issues_of("Patient", {"resourceType": "Patient", "name": [name]}) == (400, one(
        "structure", "SF-0108: '_given' must have as many items as 'given'", "Patient.name[0]._given"))


def test_contained_resources_of_unknown_type() -> None:
    for bad, shown in (({"resourceType": "Nope", "id": "a"}, "Nope"), ({"id": "a"}, "None"),
                       ({"resourceType": 1}, "1")):
        assert issues_of("Patient", {"resourceType": "Patient", "contained": [bad]}) == (400, one(
            "structure", f"SF-0117: '{shown}' is not a FHIR resource type", "Patient.contained[0].resourceType"))


def test_missing_required_elements() -> None:
    assert issues_of("Flag", {"resourceType": "Flag"}) == (400, [
        *one("required", "SF-0113: Missing required element Flag.status", "Flag.status"),
        *one("required", "SF-0113: Missing required element Flag.code", "Flag.code"),
        *one("required", "SF-0113: Missing required element Flag.subject", "Flag.subject"),
    ])
    # a primitive extension stands in for a missing value (e.g. data-absent-reason)
    absent = {k: v for k, v in FLAG.items() if k != "status"}
    absent["_status"] = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                        "valueCode": "unknown"}]}
    assert validate_resource("Flag", absent) == []


def test_choice_with_two_types_is_reported_by_the_model() -> None:
    patient = {"resourceType": "Patient", "deceasedBoolean": True, "deceasedDateTime": "2026"}
    assert issues_of("Patient", patient) == (400, one(
        "structure", "SF-0107: Any of one field value is expected from this list ['deceasedBoolean', "
        "'deceasedDateTime'], but got multiple! at Patient", "Patient"))


def test_ele1_empty_elements_and_nulls() -> None:
    text = "SF-0106: ele-1: elements must have a value or children (no nulls, empty objects, arrays or strings)"
    patient = {"resourceType": "Patient", "name": [{}], "gender": None, "telecom": [], "birthDate": " "}
    assert issues_of("Patient", patient) == (400, [
        *one("invalid", text, "Patient.name[0]"), *one("invalid", text, "Patient.gender"),
        *one("invalid", text, "Patient.telecom"), *one("invalid", text, "Patient.birthDate"),
    ])


# -- invariants ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resource", "key_text", "expression"),
    [
        ({**FLAG, "period": {"start": "2026-02-01", "end": "2026-01-31"}},
         "per-1: If present, start SHALL have a lower value than end", "Flag.period"),
        ({**FLAG, "period": {"start": "2026-01-05T10:00:00+01:00", "end": "2026-01-05T08:59:59Z"}},
         "per-1: If present, start SHALL have a lower value than end", "Flag.period"),
        ({"resourceType": "Patient", "extension": [{"url": "http://x"}]},
         "ext-1: Must have either extensions or value[x], not both", "Patient.extension[0]"),
        ({"resourceType": "Patient", "managingOrganization": {"reference": "#org"}},
         "ref-1: SHALL have a contained resource if a local reference is provided (#org)",
         "Patient.managingOrganization.reference"),
        ({"resourceType": "DocumentReference", "status": "current", "content": [{"attachment": {"data": "aGk="}}]},
         "att-1: If the Attachment has data, it SHALL have a contentType", "DocumentReference.content[0].attachment"),
        ({"resourceType": "Patient", "telecom": [{"value": "01632 960000"}]},
         "cpt-2: A system is required if a value is provided", "Patient.telecom[0]"),
        ({"resourceType": "Encounter", "status": "finished", "class": {"code": "EMER"},
          "length": {"value": 5, "code": "min"}},
         "qty-3: If a code for the unit is present, the system SHALL also be present", "Encounter.length"),
        ({"resourceType": "Patient", "text": {"status": "generated", "div": "plain text"}},
         "txt-1: The narrative SHALL be well-formed XHTML (syntax error: line 1, column 0)", "Patient.text.div"),
        ({"resourceType": "Patient", "text": {"status": "generated",
                                              "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script>'
                                                     '</div>'}},
         "txt-1: The narrative SHALL contain only basic html formatting elements, not <script>", "Patient.text.div"),
        ({"resourceType": "Patient", "text": {"status": "generated", "div": '<div><p onclick="x">a</p></div>'}},
         "txt-1: The narrative SHALL NOT contain event handler attributes", "Patient.text.div"),
        ({"resourceType": "Patient", "text": {"status": "generated",
                                              "div": '<!DOCTYPE d [<!ENTITY a "b">]><div>&a;</div>'}},
         "txt-1: The narrative may not hold DOCTYPE or ENTITY declarations", "Patient.text.div"),
        ({"resourceType": "Patient", "text": {"status": "generated", "div": "<div> </div>"}},
         "txt-2: The narrative SHALL have some non-whitespace content", "Patient.text.div"),
        ({"resourceType": "Patient", "contact": [{"gender": "male"}]},
         "pat-1: SHALL at least contain a contact's details or a reference to an organization", "Patient.contact[0]"),
        ({"resourceType": "Organization", "active": True},
         "org-1: The organization SHALL at least have a name or an identifier", "Organization"),
        ({"resourceType": "Organization", "name": "x", "address": [{"use": "home", "city": "Leeds"}]},
         "org-2: An address of an organization can never be of use 'home'", "Organization.address[0]"),
        ({"resourceType": "Organization", "name": "x", "telecom": [{"system": "phone", "value": "1", "use": "home"}]},
         "org-3: The telecom of an organization can never be of use 'home'", "Organization.telecom[0]"),
        ({"resourceType": "CareTeam", "participant": [{"member": {"reference": "Organization/1"},
                                                       "onBehalfOf": {"reference": "Organization/2"}}]},
         ("ctm-1: CareTeam.participant.onBehalfOf can only be populated when CareTeam.participant.member is a "
          "Practitioner"), "CareTeam.participant[0]"),
        ({"resourceType": "Task", "status": "requested", "intent": "order", "authoredOn": "2026-01-05",
          "lastModified": "2026-01-04T23:59:59Z"},
         "inv-1: Last modified date must be greater than or equal to authored-on date", "Task"),
        ({"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2026-01-05T09:00:00Z",
          "agent": [{"requestor": True}], "source": {"observer": {"display": "x"}},
          "entity": [{"name": "x", "query": "eA=="}]},
         "sev-1: Either a name or a query (NOT both)", "AuditEvent.entity[0]"),
        ({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "name": "x",
                                                    "contained": [{"resourceType": "Organization", "name": "y"}]}]},
         "dom-2: A contained resource SHALL NOT contain nested Resources", "Patient.contained[0]"),
        ({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "name": "x",
                                                    "meta": {"versionId": "1"}}]},
         "dom-4: A contained resource SHALL NOT have a meta.versionId or a meta.lastUpdated", "Patient.contained[0]"),
        ({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "name": "x",
                                                    "meta": {"security": [{"code": "R"}]}}]},
         "dom-5: A contained resource SHALL NOT have a security label", "Patient.contained[0]"),
    ],
)
def test_invariants(resource: dict[str, Any], key_text: str, expression: str) -> None:
    assert issues_of(resource["resourceType"], resource) == (400, one("invariant", f"SF-0105: {key_text}", expression))


def test_ctm1_passes_members_it_cannot_type() -> None:
    for member in ({"reference": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"},
                   {"identifier": {"system": "x:y", "value": "1"}},
                   {"reference": "https://ods.example/fhir/Practitioner/p1/_history/2"}):
        care_team = {"resourceType": "CareTeam", "participant": [{"member": member,
                                                                  "onBehalfOf": {"reference": "Organization/1"}}]}
        assert validate_resource("CareTeam", care_team) == [], member


def test_all_issues_of_one_resource_come_together() -> None:
    flag = {**FLAG, "status": "bogus", "period": {"start": "2026-02-01", "end": "2026-01-01"}, "foo": 1}
    status, issues = issues_of("Flag", flag)
    assert status == 400
    assert [(i["code"], i["expression"]) for i in issues] == [
        ("code-invalid", ["Flag.status"]), ("structure", ["Flag.foo"]), ("invariant", ["Flag.period"])]


# -- business rules: 422 -----------------------------------------------------------------------------
def test_nhs_number_check_digit_is_422_wherever_the_identifier_sits() -> None:
    flag = {**FLAG, "subject": {"identifier": {"system": NHS, "value": "9990000019"}}}
    assert issues_of("Flag", flag) == (422, [{
        "severity": "error", "code": "business-rule", "expression": ["Flag.subject.identifier.value"],
        "diagnostics": "SF-0201: '9990000019' is not a valid NHS number (ten digits with a Modulus 11 check digit)",
    }])
    patient = {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990000018"},
                                                         {"system": NHS, "value": "999000014"}]}
    assert issues_of("Patient", patient)[1][0]["expression"] == ["Patient.identifier[1].value"]
    # other systems are not checked
    assert validate_resource("Patient", {"resourceType": "Patient", "identifier": [{"system": "x:y", "value": "1"}]}) == []


def test_structure_errors_come_before_business_rules() -> None:
    patient = {"resourceType": "Patient", "gender": "x", "identifier": [{"system": NHS, "value": "1"}]}
    assert issues_of("Patient", patient)[0] == 400


def test_unknown_profile_is_refused_and_the_core_profile_is_known() -> None:
    assert validate_resource("Flag", FLAG, profiles=["http://hl7.org/fhir/StructureDefinition/Flag"]) == []
    assert issues_of_profile("https://example.org/StructureDefinition/other") == (400, [{
        "severity": "error", "code": "not-supported", "expression": ["profile"],
        "diagnostics": "SF-0114: Unknown profile 'https://example.org/StructureDefinition/other'"}])


def issues_of_profile(url: str) -> tuple[int, list[dict[str, Any]]]:
    with pytest.raises(FhirError) as raised:
        validate_resource("Flag", FLAG, profiles=[url])
    return raised.value.status, [i.to_fhir() for i in raised.value.issues]
