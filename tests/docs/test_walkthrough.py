"""The README's walkthrough and the documentation's examples run as written, against a live server.

Each Markdown file's runnable blocks (tests/docs/runnable.py) run in order with bash against a real
`safeflag serve` (tests/e2e/server.py), on SQLite and on PostgreSQL, with `.venv/bin` on the PATH as
the documents ask of their readers. Every block must exit 0 and print the lines it promises with
`#=> ...`. The blocks make their own fresh NHS numbers (999 test range, valid Modulus 11 check digit)
and ids, so a reader can repeat them on the same database: on SQLite each document runs twice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _pg_url
from tests.docs.runnable import ROOT, Session, blocks, documents, missing_lines
from tests.e2e.server import RunningServer, start_server
from tests.support.postgres import free_port

pytestmark = pytest.mark.e2e

DOCUMENTS = documents()
HOOK_PORT = free_port()  # the example webhook receiver's port (the documents default to 9000)
RESTORE_PORT = free_port()  # the restore drill's second server (the documents default to 8181)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    url = None
    if request.param == "pg":
        url = _pg_url(request.getfixturevalue("pg_cluster"), "docs_walkthrough")
    srv = start_server(url, extra_env={"SAFEFLAG_WEBHOOK_ALLOW": f"127.0.0.1,localhost,127.0.0.1:{HOOK_PORT}"})
    try:
        yield srv
    finally:
        srv.cleanup()


def session_for(server: RunningServer, workdir: Path) -> Session:
    env = dict(server.env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOOK_PORT"] = str(HOOK_PORT)
    env["RESTORE_PORT"] = str(RESTORE_PORT)
    workdir.mkdir()
    return Session(workdir, env)


def test_the_readme_and_the_docs_have_runnable_blocks() -> None:
    """The run below cannot pass by finding nothing: the README's walkthrough and the flows are runnable."""
    names = {p.relative_to(ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "docs/api/interactions.md", "docs/api/ed-attendance.md", "docs/api/flags.md",
            "docs/api/referrals.md", "docs/integrating.md", "docs/deployment.md"} <= names
    assert len(blocks(ROOT / "README.md")) >= 5


@pytest.mark.parametrize("document", DOCUMENTS, ids=[p.relative_to(ROOT).as_posix() for p in DOCUMENTS])
def test_runnable_blocks(document: Path, server: RunningServer, tmp_path: Path) -> None:
    """Every runnable block of the document, in order: exit 0, and the lines it promises. On SQLite the
    document runs a second time on the same database, as a reader repeating it would (fresh ids and NHS
    numbers, nothing left over from the first run in the way)."""
    for run in (1, 2) if server.database == "SQLite" else (1,):
        session = session_for(server, tmp_path / f"run{run}")
        try:
            for block in blocks(document):
                if block.database not in (None, server.database.lower()):
                    continue
                outcome = session.run(block)
                assert outcome.returncode == 0, f"run {run}: " + outcome.report()
                missing = missing_lines(block.expected, outcome.stdout)
                assert not missing, f"run {run}: {block.where} did not print {missing}\n" + outcome.report()
        finally:
            session.stop()
