"""The `safeflag` console script as a real process: every error is one plain line on stderr
(`error: ...`), whatever the terminal width or the length of a path, never a traceback, and the exit
code says it failed (2: the command line or its inputs; 1: a failure while working)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.server import safeflag_command

LONG = "[x]-" + "d" * 120 + "/" + "e" * 100  # over 200 characters, with brackets Rich would read as markup


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAFEFLAG_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "40", "TERM": "xterm-256color"}
    env.pop("SAFEFLAG_DATABASE_URL", None)
    return subprocess.run([*safeflag_command(), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120, check=False)


def test_report_chart_to_a_missing_directory(tmp_path: Path) -> None:
    chart = tmp_path / LONG / "x.png"
    done = _run(tmp_path, "report", "--month", "2026-03", "--chart", str(chart))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"error: --chart: {chart.parent} is not a directory\n"


def test_client_add_with_a_long_path(tmp_path: Path) -> None:
    jwks = tmp_path / LONG / "jwks.json"
    jwks.parent.mkdir(parents=True)
    jwks.write_text("{not json")
    done = _run(tmp_path, "client", "add", "--id", "c", "--jwks-file", str(jwks), "--scope", "system/Encounter.c")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"error: {jwks} is not JSON: Expecting property name enclosed in double quotes: "
                           "line 1 column 2 (char 1)\n")
    missing = tmp_path / LONG / "none.json"
    done = _run(tmp_path, "client", "add", "--id", "c", "--jwks-file", str(missing), "--scope", "system/Encounter.c")
    assert (done.returncode, done.stderr) == (2, f"error: cannot read {missing}: No such file or directory\n")


@pytest.mark.parametrize(("args", "line"), [
    (["token", "--sub", "x"], "error: Missing option '--role'. (see --help)"),
    (["token", "--sub", "x", "--role", "admin", "--ttl", "0"],
     "error: Invalid value for '--ttl': Input should be greater than or equal to 1 (see --help)"),
    (["no-such-command"], "error: No such command 'no-such-command'. (see --help)"),
    (["import-caseload", f"/nonexistent/{LONG}.csv"],
     f"error: cannot read /nonexistent/{LONG}.csv: [Errno 2] No such file or directory: '/nonexistent/{LONG}.csv'"),
])
def test_usage_and_input_errors(tmp_path: Path, args: list[str], line: str) -> None:
    done = _run(tmp_path, *args)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", line + "\n")


def test_database_errors_without_sql_and_a_good_command(tmp_path: Path) -> None:
    report = ("report", "--month", "2026-03", "--format", "json", "--as-of", "2026-04-01T00:00:00Z")
    done = _run(tmp_path, *report)  # not migrated yet
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "error: cannot read the database: OperationalError: no such table: resource\n"
    assert _run(tmp_path, "migrate").returncode == 0
    done = _run(tmp_path, *report)
    assert (done.returncode, json.loads(done.stdout), done.stderr) == (0, [], "")


def _commands() -> list[list[str]]:
    import typer.main

    from app.cli import app

    top = typer.main.get_command(app)
    out: list[list[str]] = [[]]
    for name, command in top.commands.items():  # type: ignore[attr-defined]
        out.append([name])
        out.extend([name, sub] for sub in getattr(command, "commands", {}))
    return out


@pytest.mark.parametrize("columns", ["80", "200"])
def test_help_in_plain_words(tmp_path: Path, columns: str) -> None:
    """Every command's help: option types as words (TEXT, INTEGER, PATH), nothing after a flag, no
    typer `<bool>`/`<str>`/`<int>`; `token --care-setting` lists every care setting code."""
    from app.security.cli import care_setting_codes

    env = {**os.environ, "SAFEFLAG_DATA_DIR": str(tmp_path / "data"), "COLUMNS": columns}
    for command in _commands():
        done = subprocess.run([*safeflag_command(), *command, "--help"], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120, check=False)
        assert (done.returncode, done.stderr) == (0, ""), command
        assert re.search(r"<(bool|str|int|float|path)\b", done.stdout) is None, (command, done.stdout)
        assert "--help" in done.stdout
    token_help = subprocess.run([*safeflag_command(), "token", "--help"], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=120, check=True).stdout
    words = set(re.findall(r"[\w-]+", token_help))
    assert {code for _, code in care_setting_codes()} <= words
    assert re.search(r"--port\s+INTEGER", subprocess.run([*safeflag_command(), "serve", "--help"], capture_output=True,
                                                          text=True, env=env, cwd=tmp_path, timeout=120,
                                                          check=True).stdout)


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    done = _run(tmp_path, "--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"safeflag {version('safeflag')}\n", "")
