"""The hazard log (docs/clinical-safety/hazard-log.md) is only as good as its controls: every hazard must
name at least one control, every control at least one test, and every named test must exist in this
suite and not be skipped. This test reads the log as a clinical safety officer would and fails when the
log and the suite drift apart.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "docs" / "clinical-safety" / "hazard-log.md"

HEADING = re.compile(r"^### (H-\d{2}): (.+)$")
FIELD = re.compile(r"^- \*\*(?P<name>[^*:]+):\*\*\s*(?P<value>.*)$")
CONTROL = re.compile(r"^  - (?P<text>.+)$")
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")
SEVERITIES = ("Minor", "Significant", "Considerable", "Major", "Catastrophic")
LIKELIHOODS = ("Very low", "Low", "Medium", "High", "Very high")
REQUIRED_FIELDS = ("Cause", "Effect", "Severity", "Likelihood before controls", "Controls",
                   "Likelihood after controls", "Residual risk")
# The hazards the log must cover at the least (named by the first words of their titles).
REQUIRED_HAZARDS = (
    "Notice never sent", "Notice late", "Notice sent to the wrong person", "Notice sent for the wrong child",
    "Unrouted notice unseen", "Duplicate or merged Patient", "Restricted record disclosed",
    "Ended flag shown as active", "Duplicate flag", "Referral copy lost or altered", "Access not audited",
    "Token or clock misuse", "Due time wrong", "Embedded database losing commits",
)


@dataclass
class Control:
    text: str
    tests: list[tuple[str, str]]


@dataclass
class Hazard:
    ident: str
    title: str
    fields: dict[str, str] = field(default_factory=dict)
    controls: list[Control] = field(default_factory=list)


def parse(text: str) -> list[Hazard]:
    hazards: list[Hazard] = []
    current: Hazard | None = None
    in_controls = False
    for line in text.splitlines():
        if m := HEADING.match(line):
            current = Hazard(m[1], m[2].strip())
            hazards.append(current)
            in_controls = False
        elif current is None:
            continue
        elif line.startswith("#"):
            current, in_controls = None, False
        elif m := FIELD.match(line):
            current.fields[m["name"].strip()] = m["value"].strip()
            in_controls = m["name"].strip() == "Controls"
        elif in_controls and (m := CONTROL.match(line)):
            current.controls.append(Control(m["text"], TEST_ID.findall(m["text"])))
        elif in_controls and line.startswith("    ") and current.controls:
            control = current.controls[-1]  # a control's text may wrap onto indented lines
            control.text += " " + line.strip()
            control.tests.extend(TEST_ID.findall(line))
    return hazards


def defined_tests(path: Path) -> dict[str, ast.AST]:
    """`name` and `Class::name` -> the definition node, for every test function in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}::{item.name}"] = item
    return found


def is_skipped(node: ast.AST) -> bool:
    for deco in getattr(node, "decorator_list", []):
        text = ast.unparse(deco)
        if re.search(r"\bmark\.(skip|skipif|xfail)\b", text):
            return True
    return False


HAZARDS = parse(LOG.read_text(encoding="utf-8"))


def test_the_log_parses_and_covers_the_required_hazards() -> None:
    titles = [h.title for h in HAZARDS]
    assert len(HAZARDS) >= len(REQUIRED_HAZARDS)
    idents = [h.ident for h in HAZARDS]
    assert len(set(idents)) == len(idents), f"hazard ids repeat: {idents}"
    missing = [r for r in REQUIRED_HAZARDS if not any(t.lower().startswith(r.lower()) for t in titles)]
    assert missing == []


@pytest.mark.parametrize("hazard", HAZARDS, ids=lambda h: h.ident)
def test_each_hazard_is_rated_and_controlled_by_tests(hazard: Hazard) -> None:
    for name in REQUIRED_FIELDS:
        assert hazard.fields.get(name, "") != "" or name == "Controls", f"{hazard.ident}: no {name}"
    assert hazard.fields["Severity"].split(" (")[0] in SEVERITIES
    for name in ("Likelihood before controls", "Likelihood after controls"):
        assert hazard.fields[name].split(" (")[0] in LIKELIHOODS, f"{hazard.ident}: {name}"
    assert re.match(r"^[1-5]\b", hazard.fields["Residual risk"]), f"{hazard.ident}: residual risk 1-5"
    assert hazard.controls, f"{hazard.ident} has no control"
    for control in hazard.controls:
        assert control.tests, f"{hazard.ident}: control without a test: {control.text[:80]}"


@pytest.mark.parametrize("hazard", HAZARDS, ids=lambda h: h.ident)
def test_every_named_test_exists_and_runs(hazard: Hazard) -> None:
    problems = []
    for control in hazard.controls:
        for path, name in control.tests:
            module = ROOT / path
            if not module.is_file():
                problems.append(f"{path} does not exist")
                continue
            node = defined_tests(module).get(name)
            if node is None or not name.split("::")[-1].startswith("test"):
                problems.append(f"{path}::{name} is not a test in that module")
            elif is_skipped(node):
                problems.append(f"{path}::{name} is marked skip/xfail")
    assert problems == [], f"{hazard.ident}: " + "; ".join(problems)


def test_the_checker_catches_a_missing_test_and_a_control_without_one() -> None:
    """The checks above must be able to fail: a log naming a test that is not there, and a hazard whose
    control names none, are both caught."""
    bad = parse(
        "### H-98: Made up\n- **Controls:**\n  - a control with no test\n"
        "### H-99: Also made up\n- **Controls:**\n  - names a ghost. Tests: `tests/nowhere.py::test_ghost`\n"
    )
    assert [h.ident for h in bad] == ["H-98", "H-99"]
    assert bad[0].controls[0].tests == []
    assert bad[1].controls[0].tests == [("tests/nowhere.py", "test_ghost")]
    assert not (ROOT / "tests/nowhere.py").exists()
    assert "test_ghost" not in defined_tests(Path(__file__))
