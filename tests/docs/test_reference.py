"""The reference pages are complete: every message id the server can give is listed in
docs/api/errors.md, and every setting is in docs/deployment.md's configuration reference. A new id or
setting without its line in the docs fails here, and so does a documented one that no longer exists.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from tests.docs.runnable import ROOT

MSG_ID = re.compile(r"\bSF-\d{4}\b")
ERRORS = ROOT / "docs" / "api" / "errors.md"
DEPLOYMENT = ROOT / "docs" / "deployment.md"


def ids_in_app() -> set[str]:
    return {m for path in (ROOT / "app").rglob("*.py") for m in MSG_ID.findall(path.read_text(encoding="utf-8"))}


def listed_ids() -> set[str]:
    """The ids of the table rows of the errors page (`| `SF-nnnn` | status | text |`)."""
    return set(re.findall(r"^\| `(SF-\d{4})` \|", ERRORS.read_text(encoding="utf-8"), re.MULTILINE))


def configuration_reference() -> str:
    text = DEPLOYMENT.read_text(encoding="utf-8")
    start = text.index("\n## Configuration reference\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def test_every_message_id_the_server_raises_is_documented() -> None:
    raised = ids_in_app()
    assert len(raised) > 100  # the scan finds the ids (they are spread over app/)
    assert sorted(raised - listed_ids()) == []


def test_every_documented_message_id_exists() -> None:
    assert sorted(listed_ids() - ids_in_app()) == []


def test_each_message_id_is_listed_once() -> None:
    rows = re.findall(r"^\| `(SF-\d{4})` \|", ERRORS.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(rows) == len(set(rows))


def test_every_setting_is_in_the_configuration_reference() -> None:
    names = {f"SAFEFLAG_{name.upper()}" for name in Settings.model_fields}
    assert len(names) > 20
    documented = set(re.findall(r"`(SAFEFLAG_[A-Z0-9_]+)`", configuration_reference()))
    assert sorted(names - documented) == []


def test_the_configuration_reference_names_no_setting_that_does_not_exist() -> None:
    names = {f"SAFEFLAG_{name.upper()}" for name in Settings.model_fields}
    table_rows = [line for line in configuration_reference().splitlines() if line.startswith("| `SAFEFLAG_")]
    in_first_column = {n for row in table_rows for n in re.findall(r"`(SAFEFLAG_[A-Z0-9_]+)`", row.split(" | ")[0])}
    assert in_first_column and sorted(in_first_column - names) == []



def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of `safeflag` (typer's own click classes: a group has `commands`)."""
    out = [path]
    for name, sub in getattr(command, "commands", {}).items():
        out.extend(command_paths(sub, (*path, name)))
    return out


def test_command_line_help_sends_readers_only_to_the_repository() -> None:
    """What `--help` prints is documentation too: no section of a brief the reader does not have."""
    paths = command_paths(typer.main.get_command(cli))
    assert {("report",), ("client", "keygen"), ("serve",)} <= set(paths)
    runner = CliRunner()
    texts = {" ".join(("safeflag", *path)): runner.invoke(cli, [*path, "--help"]).output for path in paths}
    assert all("Usage" in text for text in texts.values())
    assert [name for name, text in texts.items() if re.search(r"contract|performance\.md|issue \d", text, re.IGNORECASE)] == []
