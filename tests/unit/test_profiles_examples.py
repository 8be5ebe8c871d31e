"""Every example in fhir_profiles/ meets its profiles; a broken copy of each fails with exactly the expected
issues (app/fhir/profiles)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from app.errors import Issue
from app.fhir.profiles import get_engine, get_store, profile_issues, profiles_for, validate_against
from tests.support.profiles import compile_all

BASE = "https://fhir.safeflag.example"
SD = BASE + "/StructureDefinition/"
CS = BASE + "/CodeSystem/"
VS = BASE + "/ValueSet/"
SCT = "http://snomed.info/sct"
EXAMPLES = get_store().examples


def example(example_id: str) -> dict[str, Any]:
    return copy.deepcopy(next(e for _, e in EXAMPLES if e["id"] == example_id))


def err(msg_id: str, code: str, expr: str, text: str, profile: str | None = None) -> Issue:
    if profile:
        text += f" (profile {SD}{profile})"
    return Issue(code, text, "error", (expr,), msg_id)


def test_every_profile_compiles() -> None:
    compile_all(get_engine())
    assert len(get_engine()._compiled) == 13


@pytest.mark.parametrize("path,resource", EXAMPLES, ids=[p.name for p, _ in EXAMPLES])
def test_every_example_validates(path: Path, resource: dict[str, Any]) -> None:
    assert profile_issues(resource["resourceType"], resource) == []
    claimed = resource.get("meta", {}).get("profile", [])
    assert profiles_for(resource) == claimed  # the default rule picks the same profile as the claim
    for url in claimed:
        assert validate_against(url, resource) == []


FLAG = "safeguarding-flag"


def test_flag_without_our_category_author_or_patient_subject() -> None:
    flag = example("example-child-protection-plan")
    flag["category"] = flag["category"][1:]  # HL7 `safety` alone
    flag["code"] = {"coding": [{"system": SCT, "code": "123456"}], "text": "something else"}
    flag["subject"] = {"reference": "Group/g1"}
    del flag["author"]
    assert profile_issues("Flag", flag) == [
        err("SF-0601", "required", "Flag.category:safeguarding",
            "Flag.category:safeguarding: minimum required = 1, but only found 0", FLAG),
        err("SF-0605", "code-invalid", "Flag.code",
            f"Flag.code: none of the codes provided ({SCT}|123456) is in the required value set "
            f"'Safeguarding flag code' ({VS}safeguarding-flag-code)", FLAG),
        err("SF-0607", "structure", "Flag.subject",
            "Flag.subject: a reference to Group is not allowed here (allowed: Patient)", FLAG),
        err("SF-0601", "required", "Flag.author",
            "Flag.author: minimum required = 1, but only found 0", FLAG),
    ]


def test_flag_with_unknown_category_and_two_reasons() -> None:
    flag = example("example-ended-exploitation-risk")
    flag["category"][0]["coding"][0]["code"] = "exploitation"
    flag["extension"].append({"url": SD + "status-reason", "valueCodeableConcept": {"text": "no code"}})
    assert profile_issues("Flag", flag) == [
        err("SF-0602", "structure", "Flag.extension:statusReason",
            "Flag.extension:statusReason: maximum allowed = 1, but found 2", FLAG),
        err("SF-0605", "code-invalid", "Flag.category[0]",
            f"Flag.category:safeguarding: none of the codes provided "
            f"({CS}safeguarding-flag-category|exploitation) is in the required value set "
            f"'Safeguarding flag category' ({VS}safeguarding-flag-category)", FLAG),
        err("SF-0605", "code-invalid", "Flag.extension[1].valueCodeableConcept",
            f"Extension.value[x]: no code provided, and a code from the required value set 'Status reason' "
            f"({VS}status-reason) is expected", "status-reason"),
    ]


def test_significant_adult_extension_must_name_a_related_person() -> None:
    flag = example("example-significant-adult")
    flag["extension"][0]["valueReference"] = {"reference": "Patient/example-mother"}
    flag["extension"].append({"url": SD + "significant-adult", "valueString": "the father"})
    assert profile_issues("Flag", flag) == [
        err("SF-0602", "structure", "Flag.extension:significantAdult",
            "Flag.extension:significantAdult: maximum allowed = 1, but found 2", FLAG),
        err("SF-0607", "structure", "Flag.extension[0].valueReference",
            "Extension.value[x]: a reference to Patient is not allowed here (allowed: RelatedPerson)",
            "significant-adult"),
        err("SF-0610", "structure", "Flag.extension[1].valueString",
            "Extension.value[x]: type String is not allowed here (allowed: Reference)", "significant-adult"),
    ]


PATIENT = "safeguarding-patient"


def test_patient_with_a_bad_or_second_nhs_number() -> None:
    patient = example("example-child")
    patient["identifier"].append({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000019"})
    too_many = err("SF-0602", "structure", "Patient.identifier:nhsNumber",
                   "Patient.identifier:nhsNumber: maximum allowed = 1, but found 2", PATIENT)
    check_digit = err("SF-0612", "invariant", "Patient.identifier[1].value",
                      "sf-nhs-1: An NHS number is ten digits whose last digit is the Modulus 11 check digit "
                      "of the first nine", PATIENT)
    assert validate_against(SD + PATIENT, patient) == [too_many, check_digit]
    # on writes validation.py has already reported the check digit (SF-0201) for every identifier
    assert profile_issues("Patient", patient) == [too_many]


def test_patient_claiming_the_profile_without_an_nhs_number() -> None:
    patient = example("example-mother")
    patient["identifier"] = [{"system": "https://example.org/mrn", "value": "123"}]
    assert profile_issues("Patient", patient) == [
        err("SF-0601", "required", "Patient.identifier:nhsNumber",
            "Patient.identifier:nhsNumber: minimum required = 1, but only found 0", PATIENT),
    ]
    patient["identifier"] = [{"system": "https://fhir.nhs.uk/Id/nhs-number", "id": "x"}]
    assert profile_issues("Patient", patient) == [
        err("SF-0601", "required", "Patient.identifier[0].value",
            "Patient.identifier:nhsNumber.value: minimum required = 1, but only found 0", PATIENT),
    ]
    del patient["meta"], patient["identifier"]
    assert profiles_for(patient) == [] and profile_issues("Patient", patient) == []


ED = "ed-attendance-encounter"


def test_ed_encounter_needs_emer_and_a_patient_subject() -> None:
    encounter = example("example-ed-attendance")
    encounter["class"]["code"] = "AMB"
    del encounter["subject"]
    encounter["serviceProvider"] = {"reference": "https://other.example/fhir/Practitioner/p1"}
    assert profile_issues("Encounter", encounter) == [
        err("SF-0604", "value", "Encounter.class",
            'Encounter.class: the value must match the pattern '
            '{"code":"EMER","system":"http://terminology.hl7.org/CodeSystem/v3-ActCode"}', ED),
        err("SF-0601", "required", "Encounter.subject",
            "Encounter.subject: minimum required = 1, but only found 0", ED),
        err("SF-0607", "structure", "Encounter.serviceProvider",
            "Encounter.serviceProvider: a reference to Practitioner is not allowed here "
            "(allowed: Organization)", ED),
    ]
    # without the claim, an ambulatory encounter is no ED attendance: nothing to check
    del encounter["meta"]
    assert profiles_for(encounter) == [] and profile_issues("Encounter", encounter) == []


def test_ed_encounter_preferred_bindings_do_not_constrain() -> None:
    encounter = example("example-ed-attendance")
    encounter["reasonCode"] = [{"coding": [{"system": SCT, "code": "1234"}]}]
    encounter["hospitalization"]["dischargeDisposition"] = {"coding": [{"system": SCT, "code": "306689006"}]}
    assert profile_issues("Encounter", encounter) == []


COMM = "safeguarding-communication"


def test_communication_with_unknown_category_and_no_subject() -> None:
    comm = example("example-ed-attendance-notice")
    comm["category"][0]["coding"][0]["code"] = "ed-visit"
    del comm["subject"]
    comm["recipient"].append({"reference": "Patient/example-mother"})
    assert profile_issues("Communication", comm) == [
        err("SF-0605", "code-invalid", "Communication.category[0]",
            f"Communication.category:safeguarding: none of the codes provided "
            f"({CS}safeguarding-communication-category|ed-visit) is in the required value set "
            f"'Safeguarding communication category' ({VS}safeguarding-communication-category)", COMM),
        err("SF-0601", "required", "Communication.subject",
            "Communication.subject: minimum required = 1, but only found 0", COMM),
        err("SF-0607", "structure", "Communication.recipient[1]",
            "Communication.recipient: a reference to Patient is not allowed here "
            "(allowed: CareTeam, Organization, Practitioner, PractitionerRole)", COMM),
    ]


DOC = "referral-copy-document-reference"


def test_referral_copy_of_another_type_and_without_content_type() -> None:
    doc = example("example-mash-referral-copy-in-error")
    doc["type"] = {"coding": [{"system": "http://loinc.org", "code": "34133-9"}]}
    del doc["content"][0]["attachment"]["contentType"]
    doc["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = "typo"
    mash = f'{{"coding":[{{"code":"mash-referral","system":"{CS}safeguarding-document-type"}}]}}'
    assert profile_issues("DocumentReference", doc) == [
        err("SF-0604", "value", "DocumentReference.type",
            f"DocumentReference.type: the value must match the pattern {mash}", DOC),
        err("SF-0605", "code-invalid", "DocumentReference.type",
            f"DocumentReference.type: none of the codes provided (http://loinc.org|34133-9) is in the "
            f"required value set 'Safeguarding document type' ({VS}safeguarding-document-type)", DOC),
        err("SF-0601", "required", "DocumentReference.content[0].attachment.contentType",
            "DocumentReference.content.attachment.contentType: minimum required = 1, but only found 0", DOC),
        err("SF-0605", "code-invalid", "DocumentReference.extension[0].valueCodeableConcept",
            f"Extension.value[x]: none of the codes provided ({CS}status-reason|typo) is in the required "
            f"value set 'Status reason' ({VS}status-reason)", "status-reason"),
    ]


ADULT = "significant-adult-related-person"


def test_significant_adult_with_bad_extensions_and_nhs_number() -> None:
    adult = example("example-father")
    adult["extension"][0] = {"url": SD + "parental-responsibility", "valueString": "yes"}
    adult["extension"].append({"url": SD + "household-member", "valueBoolean": False})
    adult["identifier"][0]["value"] = "9990000035"
    too_many = err("SF-0602", "structure", "RelatedPerson.extension:householdMember",
                   "RelatedPerson.extension:householdMember: maximum allowed = 1, but found 2", ADULT)
    wrong_type = err("SF-0610", "structure", "RelatedPerson.extension[0].valueString",
                     "Extension.value[x]: type String is not allowed here (allowed: boolean)",
                     "parental-responsibility")
    assert profile_issues("RelatedPerson", adult) == [too_many, wrong_type]
    assert validate_against(SD + ADULT, adult) == [
        too_many,
        err("SF-0612", "invariant", "RelatedPerson.identifier[0].value",
            "sf-nhs-1: An NHS number is ten digits whose last digit is the Modulus 11 check digit of the "
            "first nine", ADULT),
        wrong_type,
    ]


TASK = "safeguarding-task"


def test_task_with_output_type_code_no_focus_and_bad_outcome() -> None:
    task = example("example-referral-qa")
    task["code"]["coding"][0]["code"] = "qa-outcome"
    del task["focus"], task["for"]
    task["output"][0]["valueCodeableConcept"]["coding"][0]["code"] = "fine"
    assert profile_issues("Task", task) == [
        err("SF-0605", "code-invalid", "Task.code",
            f"Task.code: none of the codes provided ({CS}safeguarding-task|qa-outcome) is in the required "
            f"value set 'Safeguarding task code' ({VS}safeguarding-task)", TASK),
        err("SF-0601", "required", "Task.focus", "Task.focus: minimum required = 1, but only found 0", TASK),
        err("SF-0601", "required", "Task.for", "Task.for: minimum required = 1, but only found 0", TASK),
        err("SF-0605", "code-invalid", "Task.output[0].valueCodeableConcept",
            f"Task.output.value[x]: none of the codes provided ({CS}referral-qa-outcome|fine) is in the "
            f"required value set 'Referral quality review outcome' ({VS}referral-qa-outcome)", TASK),
    ]


def test_task_output_of_another_type() -> None:
    task = example("example-referral-qa")
    task["output"] = [{"type": {"text": "note"}, "valueString": "fine"}]
    qa = f'{{"coding":[{{"code":"qa-outcome","system":"{CS}safeguarding-task"}}]}}'
    assert profile_issues("Task", task) == [
        err("SF-0604", "value", "Task.output[0].type",
            f"Task.output.type: the value must match the pattern {qa}", TASK),
        err("SF-0610", "structure", "Task.output[0].valueString",
            "Task.output.value[x]: type String is not allowed here (allowed: CodeableConcept)", TASK),
    ]


def test_subscription_secret_extension() -> None:
    sub = example("example-ed-attendance-hook")
    sub["extension"][0]["valueString"] = "short"
    sub["channel"]["extension"].append({"url": SD + "subscription-secret", "valueString": "x" * 40})
    sub["modifierExtension"] = [{"url": SD + "subscription-secret", "valueString": "y" * 40}]
    assert profile_issues("Subscription", sub) == [
        err("SF-0612", "invariant", "Subscription.extension[0].valueString",
            "sf-secret-1: The secret has at least 32 characters", "subscription-secret"),
        err("SF-0609", "extension", "Subscription.channel.extension[1]",
            f"Extension {SD}subscription-secret is not allowed on Subscription.channel "
            "(allowed on: Subscription)"),
        err("SF-0609", "extension", "Subscription.modifierExtension[0]",
            f"Extension {SD}subscription-secret is not a modifier extension; put it in 'extension', not "
            "'modifierExtension'"),
    ]


def test_unknown_extension_under_our_base_anywhere() -> None:
    patient = example("example-child")
    patient["name"][0]["_family"] = {"extension": [{"url": SD + "nick-name", "valueString": "Al"}]}
    patient["contained"] = [{"resourceType": "RelatedPerson", "id": "rp", "patient": {"reference": "#"},
                             "extension": [{"url": SD + "household-member", "valueBoolean": True}]}]
    patient["extension"] = [{"url": "https://other.example/ext", "valueString": "not ours, not checked"}]
    assert profile_issues("Patient", patient) == [
        err("SF-0608", "extension", "Patient.name[0]._family.extension[0]",
            f"Unknown extension {SD}nick-name: SafeFlag defines no such extension"),
    ]
