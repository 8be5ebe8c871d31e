"""The documentation stands alone: every relative link and `#anchor` in the repository's Markdown
resolves inside the repository, and no page sends its reader to a document that is not there (a
developers' brief, an issue, a file on someone's machine).

Anchors are GitHub's: a heading's text, lower-cased, punctuation other than `-` and `_` dropped,
spaces as `-`, and `-1`, `-2` ... for repeated headings.
"""

from __future__ import annotations

import re
import subprocess
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
