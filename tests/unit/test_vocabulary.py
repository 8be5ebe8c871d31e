"""The vocabulary is stated once: no module in app/ spells a URL that app/vocabulary.py defines.

Every string literal in app/ (f-string parts included, docstrings excluded: they describe the wire
format to a reader) is checked against SafeFlag's canonical base and against each URL the vocabulary
module defines; a module that needs one imports it, or builds on it (`CODE_SYSTEM + "x"`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app import vocabulary

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
