"""The code speaks for itself: no file under app/ (modules, templates, scripts, styles), no published FHIR
resource in fhir_profiles/, benchmark, migration or build file sends its reader
to a document outside the repository (a developers' brief and its sections, their performance notes,
their shared folder) or to an issue number. Docstrings and comments say what a module does and why
in the project's own words, and name docs/ pages or repository paths where a reader should go on.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.runnable import ROOT

APP = ROOT / "app"
FORBIDDEN = {
    "a section of the developers' brief": re.compile(
        r"contract sections?\b|\bthe contract\b|\bcontract's\b|contract\.md", re.IGNORECASE),
    "the developers' performance notes": re.compile(r"\bperformance\.md\b", re.IGNORECASE),
    "the developers' architecture notes": re.compile(r"\barchitecture principles?\s*\d", re.IGNORECASE),
    "the developers' shared documents": re.compile(r"shared/docs|\.\./shared\b|/work/", re.IGNORECASE),
    "an issue": re.compile(r"\bissues?\s*#\s*\d+|\bissues?\s+\d+\b|\bthis issue\b", re.IGNORECASE),
}


# Beside app/: the FHIR resources the server publishes (their descriptions reach every client), the
# benchmarks, the migrations and the build and CI files. Tests may name what they were written against.
OTHER = ["fhir_profiles", "bench", "migrations"]
BUILD = ["Makefile", "pyproject.toml", "setup.py", "Dockerfile", "docker-compose.yml", "alembic.ini", ".ci/run"]


def source_files() -> list[Path]:
    found = [p for p in APP.rglob("*") if p.is_file() and p.suffix in {".py", ".jinja", ".html", ".js", ".css"}]
    found += [p for d in OTHER for p in (ROOT / d).rglob("*")
              if p.is_file() and p.suffix in {".py", ".json"} and "results" not in p.relative_to(ROOT).parts]
    return sorted(found + [ROOT / name for name in BUILD])


def references(text: str) -> list[str]:
    """'line N: what (text)' for each reference outside the repository in `text`."""
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {what} ({m.group(0)!r})"
            for what, pattern in FORBIDDEN.items() for m in pattern.finditer(text)]


def test_the_sources_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in source_files()}
    assert {"app/main.py", "app/interactions/service.py", "app/vocabulary.py", "bench/floor.py", "Makefile",
            "fhir_profiles/ConceptMap/flag-category-to-code.json", ".ci/run"} <= names
    assert any(name.endswith(".jinja") for name in names)


@pytest.mark.parametrize(("text", "expected"), [
    ('"""Access policy (contract section 3)."""', ["line 1: a section of the developers' brief ('contract section')"]),
    ("# see performance.md\n# and ../shared/docs", [
        "line 1: the developers' performance notes ('performance.md')",
        "line 2: the developers' shared documents ('../shared')",
    ]),
    ('"""(issue 5 "Acknowledgement")"""', ["line 1: an issue ('issue 5')"]),
    ('"""The only writer (architecture principle 1)."""',
     ["line 1: the developers' architecture notes ('architecture principle 1')"]),
    ("issues.append(Issue('invalid', 'x'))  # one issue per element; the import contract holds", []),
])
def test_the_check_finds_what_it_must(text: str, expected: list[str]) -> None:
    assert references(text) == expected


@pytest.mark.parametrize("path", source_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_source_file_refers_outside_the_repository(path: Path) -> None:
    assert references(path.read_text(encoding="utf-8")) == []
