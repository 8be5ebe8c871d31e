"""The documentation stands alone: every relative link and `#anchor` in the repository's Markdown
resolves inside the repository, and no page sends its reader to a document that is not there (a
developers' brief, an issue, a file on someone's machine).

Anchors are GitHub's: a heading's text, lower-cased, punctuation other than `-` and `_` dropped,
spaces as `-`, and `-1`, `-2` ... for repeated headings.
"""

from __future__ import annotations

import ast
import re
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from tests.docs.runnable import ROOT

LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\((?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE = re.compile(r"!\[[^\]]*\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^(```+|~~~+)")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")
# What a page must never send its reader to: documents outside the repository, and issue numbers.
FORBIDDEN = {
    "a section of the developers' brief": re.compile(r"contract section|\bthe contract\b|contract\.md", re.IGNORECASE),
    "the developers' performance notes": re.compile(r"\bperformance\.md\b", re.IGNORECASE),
    "the developers' shared documents": re.compile(r"shared/docs|\.\./shared\b|/work/", re.IGNORECASE),
    "a temporary file": re.compile(r"/tmp/"),
    "an issue": re.compile(r"\bissues?\s*#?\d+|\bthis issue\b|\(issue\b|\bissue tracker\b", re.IGNORECASE),
}


def markdown_files() -> list[Path]:
    """Every Markdown file the repository tracks (and new ones not yet committed), vendored ones aside."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
                            cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout.split()
    return sorted(ROOT / name for name in listed if (ROOT / name).is_file())


def prose(text: str) -> str:
    """The text outside fenced code blocks (links inside code are examples, not links)."""
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        m = FENCE.match(line.strip())
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            out.append(line)
    return "\n".join(out)


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        if m := HEADING.match(line):
            base = slug(m["text"])
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def broken_links(path: Path) -> list[str]:
    problems: list[str] = []
    text = prose(path.read_text(encoding="utf-8"))
    targets = [m["target"].strip("<>") for m in LINK.finditer(text)] + [m["target"] for m in IMAGE.finditer(text)]
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            problems.append(f"{target}: an absolute path")
            continue
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    return problems


FILES = markdown_files()


def test_the_documents_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert {"README.md", "docs/api/README.md", "docs/deployment.md", "docs/integrating.md", "CHANGELOG.md",
            "docs/clinical-safety/hazard-log.md"} <= names


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(ROOT).as_posix() for p in FILES])
def test_links_resolve_in_the_repository(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(ROOT).as_posix() for p in FILES])
def test_no_reference_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = [f"line {text.count(chr(10), 0, m.start()) + 1}: {what} ({m.group(0)!r})"
             for what, pattern in FORBIDDEN.items() for m in pattern.finditer(text)]
    assert found == []


REPO_PATH = re.compile(r"`((?:app|tests|bench|fhir_profiles|migrations)/[\w./*{},-]*)`")


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(ROOT).as_posix() for p in FILES])
def test_repository_paths_named_in_the_docs_exist(path: Path) -> None:
    """A file or folder of the repository named in code (`tests/hapi/launcher`) exists, so a page cannot
    go on naming a module that moved (what the build makes, in folders git ignores, aside)."""
    text = path.read_text(encoding="utf-8")
    missing = []
    for name in REPO_PATH.findall(text):
        pattern = re.sub(r"\{[^}]*\}", "*", name.rstrip("/."))
        if "<" in name or not any(ROOT.glob(pattern)):
            ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=ROOT, timeout=30)
            if ignored.returncode != 0:
                missing.append(name)
    assert missing == []


@pytest.mark.parametrize("name", ["Dockerfile", "docker-compose.yml"])
def test_container_files_point_at_documents_that_exist(name: str) -> None:
    """The container files' comments send readers to pages and sections that exist."""
    text = (ROOT / name).read_text(encoding="utf-8")
    refs = re.findall(r"\b((?:docs/[\w./-]+\.md|README\.md)(?:#[\w-]+)?)", text)
    assert any(r.startswith("docs/") for r in refs)
    missing = []
    for ref in refs:
        file_part, _, anchor = ref.partition("#")
        if not (ROOT / file_part).is_file() or (anchor and anchor not in anchors(ROOT / file_part)):
            missing.append(ref)
    assert missing == []
    assert not re.search(r'README "', text)  # no section of the README by name: the README is a front door


def test_the_checker_catches_what_it_must(tmp_path: Path) -> None:
    """A broken file link, a missing anchor, a path outside the repository and an absolute path are all
    reported, and links inside code blocks are not."""
    page = ROOT / "docs" / "api" / "README.md"
    assert anchors(page) >= {"fhir-json-only", "open-endpoints-and-authentication"}
    sample = ROOT / "docs" / ".links-selftest.md"
    sample.write_text("[a](nowhere.md) [b](api/README.md#no-such-heading) [c](../../x.md) [d](/etc/passwd)\n"
                      "[e](api/README.md#fhir-json-only) [f](https://example.org)\n```\n[g](missing.md)\n```\n",
                      encoding="utf-8")
    try:
        assert broken_links(sample) == [
            "nowhere.md: no such file",
            "api/README.md#no-such-heading: no heading #no-such-heading in docs/api/README.md",
            "../../x.md: outside the repository",
            "/etc/passwd: an absolute path",
        ]
    finally:
        sample.unlink()


# -- names of code the documents cite -----------------------------------------------------------------

CODE_ROOTS = ("app", "bench")
FILE_SUFFIXES = {"py", "md", "toml", "yaml", "yml", "lock", "json", "txt", "cfg", "ini", "png", "csv"}
DOTTED = re.compile(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\(\))?`")
PATH_AND_NAME = re.compile(r"`((?:app|bench)/[\w/]+\.py)`\s+`(\w+)`|`((?:app|bench)/[\w/]+\.py)::(\w+)`")


@dataclass
class CodeIndex:
    """What app/ and bench/ define: per module file its top-level names, per class name its attributes
    (methods, class-level names, fields, `self.x` assignments), and which files and packages exist."""

    modules: dict[str, set[str]] = field(default_factory=dict)  # "app/api/deps.py" -> names
    classes: dict[str, set[str]] = field(default_factory=dict)  # "FhirService" -> attributes

    def module_files(self, stem: str) -> list[str]:
        return [path for path in self.modules if Path(path).stem == stem and stem != "__init__"]

    def packages(self, name: str) -> list[str]:
        return sorted({str(Path(p).parent) for p in self.modules if Path(p).parent.name == name})


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    return []


@cache
def code_index() -> CodeIndex:
    index = CodeIndex()
    for root in CODE_ROOTS:
        for path in sorted((ROOT / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            index.modules[path.relative_to(ROOT).as_posix()] = {n for node in tree.body for n in _targets(node)}
            for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
                attrs = index.classes.setdefault(cls.name, set())
                attrs.update(n for node in cls.body for n in _targets(node))
                attrs.update(t.attr for t in ast.walk(cls) if isinstance(t, ast.Attribute)
                             and isinstance(t.ctx, ast.Store) and isinstance(t.value, ast.Name) and t.value.id == "self")
    return index


def unknown_code_names(text: str, index: CodeIndex) -> list[str]:
    """The names of code `text` cites that app/ and bench/ do not define:

    - `Class.attribute` when `Class` is a class of app/ (`FhirService.authorize`);
    - `module.name` when `module` is a module file (`policy.decide`), or `package.module[.name]` when the
      second part is a module of that package (`api.deps.Context`);
    - a module path followed by a name (`app/api/interactions.py` `create`, or `app/x.py::name`).

    Other dotted words (FHIR element paths such as `Flag.category` or `meta.security`) are not code."""
    missing: list[str] = []
    for m in DOTTED.finditer(prose(text)):
        first, *rest = m.group(1).split(".")
        if rest[-1] in FILE_SUFFIXES:  # `service.py`: a file name, checked as a path above
            continue
        if first in index.classes:
            if rest[0] not in index.classes[first]:
                missing.append(m.group(1))
            continue
        files = index.module_files(first)
        if not files:  # a package: its second part must be one of its modules
            files = [f for pkg in index.packages(first) for f in index.module_files(rest[0]) if f.startswith(pkg + "/")]
            rest = rest[1:]
        if files and rest and not any(rest[0] in index.modules[f] for f in files):
            missing.append(m.group(1))
    for m in PATH_AND_NAME.finditer(prose(text)):
        path, name = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        names = index.modules.get(path)
        if names is not None and name not in names and name not in index.classes.get(name, ()):
            missing.append(f"{path} {name}")
    return missing


CODE_DOCS = [p for p in FILES if p.relative_to(ROOT).as_posix() in {"README.md", "docs/architecture.md",
                                                                    "docs/contributing.md"}]


@pytest.mark.parametrize("path", CODE_DOCS, ids=[p.relative_to(ROOT).as_posix() for p in CODE_DOCS])
def test_code_names_cited_in_the_docs_exist(path: Path) -> None:
    """A class, method, function or constant the architecture pages name (`FhirService.authorize`,
    `policy.decide`, `app/api/interactions.py` `create`) is defined where they say, so a reader following
    a request from route to row never looks for a name that moved or went."""
    assert unknown_code_names(path.read_text(encoding="utf-8"), code_index()) == []


def test_the_code_name_check_finds_what_it_must() -> None:
    text = ("`FhirService.authorize` `FhirService.no_such_step` `policy.decide` `policy.gone` `api.deps.Context`\n"
            "`api.deps.Nothing` `Flag.category` `meta.security` `app/api/interactions.py` `create`\n"
            "`app/api/interactions.py` `vanished` `app/security/policy.py::decide` `Repository.flush()`\n")
    assert unknown_code_names(text, code_index()) == [
        "FhirService.no_such_step", "policy.gone", "api.deps.Nothing", "app/api/interactions.py vanished",
    ]
