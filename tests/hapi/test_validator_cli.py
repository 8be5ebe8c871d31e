"""The offline profile validator behind `make validate-profiles` (org.safeflag.hapi.ValidateProfiles in the
launcher jar): HAPI's FhirInstanceValidator with the bundled R4 core, our conformance resources and
in-memory terminology, no server and no network. Exercised on tests/hapi/fixtures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from tests.hapi.sandbox import validator_command
from tests.hapi.support import PROFILES, load

pytestmark = pytest.mark.hapi

HERE = Path(__file__).parent
PROFILE = "https://fhir.safeflag.example/StructureDefinition/sandbox-test-flag"
CONCERN = "https://fhir.safeflag.example/CodeSystem/sandbox-test-concern"
NO_SUCH = "https://fhir.safeflag.example/StructureDefinition/no-such-profile"
XVER_TITLE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.title"
BAD_XVER = "http://hl7.org/fhir/9.9/StructureDefinition/extension-Basic.title"


def _run(*paths: str | Path) -> subprocess.CompletedProcess[str]:
    # Relative paths from tests/hapi, so the report lines below do not depend on the checkout location.
    return subprocess.run(validator_command(*paths), cwd=HERE, capture_output=True, text=True, timeout=600)


def test_valid_fixtures_pass(hapi_jar: Path) -> None:
    out = _run("fixtures/profiles")
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines() == [
        "Loaded 3 conformance resources; checking 1 files",
        f"OK   fixtures/profiles/Flag-sandbox-test-valid.json against {PROFILE}",
        "1 files checked: 0 errors, 0 warnings",
    ]


def test_invalid_examples_fail_with_each_error(hapi_jar: Path) -> None:
    out = _run("fixtures/profiles", "fixtures/invalid")
    assert (out.returncode, out.stderr) == (1, "")
    assert out.stdout.splitlines() == [
        "Loaded 3 conformance resources; checking 3 files",
        f"OK   fixtures/profiles/Flag-sandbox-test-valid.json against {PROFILE}",
        f"FAIL fixtures/invalid/Flag-sandbox-test-bad-category.json against {PROFILE}",
        f"  error   Flag.category[0]: Unknown code '{CONCERN}#not-a-concern'",
        "  error   Flag.category[0]: None of the codings provided are in the value set "
        "'Sandbox test concern' (https://fhir.safeflag.example/ValueSet/sandbox-test-concern|0.1.0), "
        f"and a coding from this value set is required) (codes = {CONCERN}#not-a-concern)",
        f"FAIL fixtures/invalid/Flag-sandbox-test-no-period.json against {PROFILE}",
        f"  error   Flag: Flag.period: minimum required = 1, but only found 0 (from {PROFILE}|0.1.0)",
        "3 files checked: 3 errors, 0 warnings",
    ]


def test_every_kind_of_problem_is_reported(hapi_jar: Path, tmp_path: Path) -> None:
    narrative = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Sandbox test</div>'}
    unknown = load(PROFILES / "Flag-sandbox-test-valid.json") | {"meta": {"profile": [NO_SUCH]}}
    (tmp_path / "Flag-unknown-profile.json").write_bytes(orjson.dumps(unknown))
    patient = {
        "resourceType": "Patient",
        "text": narrative,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000034"}],
        "gender": "girl",
    }
    (tmp_path / "Patient-no-profile.json").write_bytes(orjson.dumps(patient))
    # fhir_profiles/ describes R4 backport SubscriptionTopics as Basic with R5 cross-version extensions; only
    # the package registry could resolve those, so offline they are warnings. A version FHIR never had is not.
    basic_code = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/basic-resource-type",
                              "code": "referral"}]}
    for name, url in (("Basic-xver-r5.json", XVER_TITLE), ("Basic-xver-bad.json", BAD_XVER)):
        basic = {"resourceType": "Basic", "text": narrative, "code": basic_code,
                 "extension": [{"url": url, "valueString": "T"}]}
        (tmp_path / name).write_bytes(orjson.dumps(basic))
    (tmp_path / "SearchParameter-skipped.json").write_bytes(orjson.dumps({"resourceType": "SearchParameter"}))
    (tmp_path / "broken.json").write_text('{"resourceType": "Patient", ')
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "notes.txt").write_text("not JSON, not read")

    out = _run("fixtures/profiles", tmp_path)
    assert (out.returncode, out.stderr) == (1, "")
    gender = "http://hl7.org/fhir/administrative-gender"
    core_only = "against core R4 only (no meta.profile)"
    assert out.stdout.splitlines() == [
        "Loaded 3 conformance resources; checking 7 files",
        f"OK   fixtures/profiles/Flag-sandbox-test-valid.json against {PROFILE}",
        f"FAIL {tmp_path}/Basic-xver-bad.json {core_only}",
        f"  error   Basic.extension[0][url='{BAD_XVER}']: Extension url '{BAD_XVER}' is not valid "
        "(invalid Version '9.9')",
        f"OK   {tmp_path}/Basic-xver-r5.json {core_only}",
        f"  warning Basic.extension[0][url='{XVER_TITLE}']: Extension url '{XVER_TITLE}' is not valid "
        "(invalid Version '5.0') - not checked: cross-version extension definitions come from the FHIR "
        "package registry, which an offline run cannot reach",
        f"FAIL {tmp_path}/Flag-unknown-profile.json against {NO_SUCH}",
        f"  error   Flag.meta.profile[0]: Profile reference '{NO_SUCH}' has not been checked because "
        "it could not be found",
        f"  error   Flag: Invalid profile. Failed to retrieve profile with url={NO_SUCH}",
        f"FAIL {tmp_path}/Patient-no-profile.json {core_only}",
        f"  error   Patient.gender: Unknown code '{gender}#girl'",
        "  error   Patient.gender: The value provided ('girl') was not found in the value set "
        "'AdministrativeGender' (http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1), and a code is "
        f"required from this value set  (error message = Unknown code '{gender}#girl'; Unknown code "
        f"'{gender}#girl' for in-memory expansion of ValueSet "
        "'http://hl7.org/fhir/ValueSet/administrative-gender')",
        f"FAIL {tmp_path}/broken.json: not JSON: Unexpected end-of-input within/between Object entries",
        f"FAIL {tmp_path}/list.json: not a FHIR resource (no resourceType)",
        "7 files checked: 7 errors, 1 warnings",
    ]


def test_misuse_exits_2(hapi_jar: Path) -> None:
    no_args = _run()
    assert (no_args.returncode, no_args.stdout) == (2, "")
    assert no_args.stderr == (
        "usage: ValidateProfiles DIR_OR_FILE... (validates *.json examples against meta.profile)\n"
    )
    missing = _run("fixtures/no-such-dir")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == "ValidateProfiles: fixtures/no-such-dir: no such file or directory\n"

