"""The vocabulary is stated once: no module in app/ spells a URL that app/vocabulary.py defines.

Every string literal in app/ (f-string parts included, docstrings excluded: they describe the wire
format to a reader) is checked against SafeFlag's canonical base and against each URL the vocabulary
module defines; a module that needs one imports it, or builds on it (`CODE_SYSTEM + "x"`).
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from app import vocabulary
from app.security.principal import ROLES

APP = Path(__file__).resolve().parents[2] / "app"
VOCABULARY = APP / "vocabulary.py"
HOST = "fhir.safeflag.example"


def defined_urls() -> dict[str, str]:
    """The vocabulary's URL constants, name -> value."""
    return {name: value for name, value in vars(vocabulary).items()
            if name.isupper() and isinstance(value, str) and ("://" in value or value.startswith("urn:"))}


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = node.body[0] if node.body else None
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                ids.add(id(doc.value))
    return ids


def literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal in `source` that is not a docstring."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip]


def misspelled(source: str, urls: dict[str, str]) -> list[str]:
    """Where `source` spells SafeFlag's canonical base or a vocabulary URL: 'line: text (NAME)'."""
    found = []
    for line, text in literals(source):
        if HOST in text:
            found.append(f"{line}: {text!r} (CANONICAL_BASE)")
            continue
        found += [f"{line}: {text!r} ({name})" for name, url in urls.items() if url in text]
    return found


def test_the_vocabulary_defines_the_systems_the_rules_read() -> None:
    urls = defined_urls()
    assert urls["CANONICAL_BASE"] == "https://fhir.safeflag.example"
    assert urls["FLAG_CATEGORY"] == "https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category"
    assert urls["CONFIDENTIALITY"] == "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
    assert urls["NHS_NUMBER_SYSTEM"] == "https://fhir.nhs.uk/Id/nhs-number"
    assert urls["BACKPORT"] == "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"


@pytest.mark.parametrize(("source", "expected"), [
    ('X = "https://fhir.safeflag.example/CodeSystem/new-one"\n',
     ["1: 'https://fhir.safeflag.example/CodeSystem/new-one' (CANONICAL_BASE)"]),
    ('def f(t):\n    return f"http://hl7.org/fhir/StructureDefinition/{t}"\n',
     ["2: 'http://hl7.org/fhir/StructureDefinition/' (HL7_STRUCTURE_DEFINITION)"]),
    ('S = {"system": "http://snomed.info/sct"}\n', ["1: 'http://snomed.info/sct' (SNOMED)"]),
    ('"""Docstring naming https://fhir.safeflag.example/Id/notice."""\nX = CODE_SYSTEM + "x"\n', []),
])
def test_the_check_finds_a_spelled_url_and_spares_docstrings(source: str, expected: list[str]) -> None:
    assert misspelled(source, defined_urls()) == expected


def test_no_module_in_app_spells_a_vocabulary_url() -> None:
    urls = defined_urls()
    found = {
        str(path.relative_to(APP.parent)): hits
        for path in sorted(APP.rglob("*.py")) if path != VOCABULARY
        if (hits := misspelled(path.read_text(encoding="utf-8"), urls))
    }
    assert found == {}


# --- codes --------------------------------------------------------------------------------------

PROFILES = APP.parent / "fhir_profiles"


def code_groups() -> dict[str, type]:
    """The vocabulary's code classes (a `SYSTEM` URL and the codes of that system), by name."""
    return {name: value for name, value in vars(vocabulary).items()
            if isinstance(value, type) and isinstance(getattr(value, "SYSTEM", None), str)}


def codes_of(group: type) -> dict[str, str]:
    """A code class's codes, constant name -> code (SYSTEM or BASE, its URL, left out)."""
    return {name: value for name, value in vars(group).items()
            if name.isupper() and name not in {"SYSTEM", "BASE"} and isinstance(value, str)}


def published_code_systems() -> dict[str, set[str]]:
    """url -> codes of every CodeSystem SafeFlag publishes in fhir_profiles/CodeSystem/."""
    systems = {}
    for path in sorted((PROFILES / "CodeSystem").glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        systems[resource["url"]] = {concept["code"] for concept in resource["concept"]}
    return systems


def published_topics() -> set[str]:
    return {json.loads(p.read_text(encoding="utf-8"))["id"] for p in (PROFILES / "SubscriptionTopic").glob("*.json")}


# Roles a token carries; user-role is not published as a CodeSystem, so the module's list is the set.
# `system` is left out of the scan: it is also the name of every Coding's system element.
UNPUBLISHED = {vocabulary.USER_ROLE: set(codes_of(vocabulary.UserRole).values()) - {"system"}}

# Strings spelled like one of the codes that mean something else, by module: DocumentReference.status
# `superseded` is FHIR's own code (document-reference-status), which the referral rules set and the
# bindings list; `safeguarding-flag` is also the name of the Flag profile (a StructureDefinition).
OTHER_MEANING = {
    "app/fhir/bindings.py": {"superseded"},
    "app/safeguarding/referrals.py": {"superseded"},
    "app/fhir/profiles/selection.py": {"safeguarding-flag"},
}


def scanned_codes() -> dict[str, list[str]]:
    """Each code the scan looks for -> the systems (or `SubscriptionTopic`) that define it."""
    owners: dict[str, list[str]] = {}
    for url, codes in [*published_code_systems().items(), *UNPUBLISHED.items(),
                       ("SubscriptionTopic", published_topics())]:
        for code in codes:
            owners.setdefault(code, []).append(url.rsplit("/", 1)[-1])
    return owners


# A code in a search token or query (`f"{TASK_CODE}|acknowledge"`, `code=acknowledge`), as opposed to a
# word in a message ("a referral-qa Task is ...") that names it for a reader.
IN_SEARCH = re.compile(r"(?:^|[|=])([a-z0-9-]+)(?=$|[,&])")


def spelled_codes(source: str, owners: dict[str, list[str]]) -> list[str]:
    """Where `source` spells one of the codes in a string literal (docstrings excepted), the whole literal
    or a search token's code: 'line: code (systems)'."""
    return [f"{line}: {code!r} ({', '.join(sorted(owners[code]))})"
            for line, text in sorted(literals(source)) for code in IN_SEARCH.findall(text) if code in owners]


@pytest.mark.parametrize("name", sorted(n for n, g in code_groups().items() if g is not vocabulary.UserRole))
def test_each_code_class_states_exactly_the_codes_its_code_system_publishes(name: str) -> None:
    group = code_groups()[name]
    stated = set(codes_of(group).values())
    assert len(stated) == len(codes_of(group)), "a code is named twice"
    published = published_code_systems()
    assert group.SYSTEM in published, f"{group.SYSTEM} is not published in fhir_profiles/CodeSystem/"
    assert stated == published[group.SYSTEM]


def test_the_user_roles_are_the_roles_a_token_may_carry_in_the_policys_order() -> None:
    roles = ("ed-clinician", "health-visitor", "school-nurse", "sexual-health-clinician", "safeguarding-lead",
             "mash-practitioner", "system", "admin")
    assert tuple(codes_of(vocabulary.UserRole).values()) == roles
    assert roles == ROLES
    assert vocabulary.UserRole.SYSTEM == "https://fhir.safeflag.example/CodeSystem/user-role"


def test_every_published_code_system_has_its_code_class() -> None:
    assert set(published_code_systems()) <= {group.SYSTEM for group in code_groups().values()}


def test_the_topic_names_are_the_published_subscription_topics() -> None:
    assert set(codes_of(vocabulary.TopicName).values()) == published_topics()
    assert vocabulary.TopicName.BASE == vocabulary.SUBSCRIPTION_TOPIC


def test_the_plan_categories_are_flag_categories() -> None:
    assert {"child-protection-plan", "looked-after-child", "unborn-child-protection-plan"} == vocabulary.PLAN_CATEGORIES
    assert published_code_systems()[vocabulary.FLAG_CATEGORY] >= vocabulary.PLAN_CATEGORIES


@pytest.mark.parametrize(("source", "expected"), [
    ('CATEGORY = "mash-referral"\n', ["1: 'mash-referral' (SubscriptionTopic, safeguarding-communication-category, "
                                       "safeguarding-document-type)"]),
    ('def f(c):\n    return c == "fgm" or c in {"x", "no-care-team"}\n',
     ["2: 'fgm' (safeguarding-flag-category)", "2: 'no-care-team' (unrouted-reason)"]),
    ('ROLES = ("admin",)\n', ["1: 'admin' (user-role)"]),
    ('"""The `ed-attendance` topic."""\nX = {"system": S, "code": TaskCode.ACKNOWLEDGE}\n# "fgm"\n', []),
    ('X = "fgm-and-more"\n', []),
    ('Q = [("code", f"{TASK_CODE}|acknowledge"), ("status", "requested,in-progress")]\n',
     ["1: 'acknowledge' (safeguarding-task)"]),
    ('URL = "Task?owner:missing=true&code=acknowledge"\n', ["1: 'acknowledge' (safeguarding-task)"]),
    ('Q = [("type", f"{ORG_ROLE}|{OrganizationRole.ZERO_TO_NINETEEN_DUTY}")]\n', []),
    ('raise Unprocessable("A referral-qa Task is owned by a lead")\n', []),
])
def test_the_check_finds_a_spelled_code_and_spares_docstrings_and_comments(source: str, expected: list[str]) -> None:
    assert spelled_codes(source, scanned_codes()) == expected


def test_each_string_with_another_meaning_is_still_there() -> None:
    owners = scanned_codes()
    for name, codes in OTHER_MEANING.items():
        found = {hit.split("'")[1] for hit in spelled_codes((APP.parent / name).read_text(encoding="utf-8"), owners)}
        assert codes <= found, name


def test_no_module_in_app_spells_a_code_of_safeflags_code_systems() -> None:
    owners = scanned_codes()
    found = {}
    for path in sorted(APP.rglob("*.py")):
        name = str(path.relative_to(APP.parent))
        if path == VOCABULARY:
            continue
        allowed = OTHER_MEANING.get(name, set())
        if hits := [hit for hit in spelled_codes(path.read_text(encoding="utf-8"), owners)
                    if hit.split("'")[1] not in allowed]:
            found[name] = hits
    assert found == {}


def test_the_vocabulary_is_in_the_bottom_layer_and_the_layers_have_no_exceptions() -> None:
    config = tomllib.loads((APP.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "layers")
    assert "app.vocabulary" in [name.strip() for name in layers["layers"][-1].split("|")]
    assert [c["id"] for c in config["contracts"] if "ignore_imports" in c] == []
    assert {name for name, value in vars(vocabulary).items() if isinstance(value, ModuleType)} == set()
