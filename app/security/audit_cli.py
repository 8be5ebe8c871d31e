"""`safeflag audit verify` and `safeflag audit checkpoint`: the audit trail's hash chains, checked from
the command line (app/security/audit_verify.py). Registered on the `safeflag` app by `register(app)`.

`verify` prints one line per problem found (lane and position of the row) and a summary line; exit
codes: 0 the trail verifies; 1 tampering found; 2 the database or the checkpoint file could not be read
(one plain line on stderr). `checkpoint` prints each lane's last position and hash as JSON: keep that
output outside the database (another machine, a WORM store) and pass it to `verify --checkpoint` later,
so that cutting off the end of a lane, or recomputing a whole chain, is found too.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli_errors import describe, fail
from app.config import get_settings
from app.security.audit_verify import Report, verify

audit = typer.Typer(help="The audit trail: verify its hash chains", no_args_is_help=True)


async def _verify(checkpoint: dict[int, tuple[int, str]] | None) -> Report:
    from app.storage.db import create_engine

    engine = create_engine(get_settings().effective_database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(verify, checkpoint)
    finally:
        await engine.dispose()


def _run(checkpoint: dict[int, tuple[int, str]] | None = None) -> Report:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return asyncio.run(_verify(checkpoint))
    except (OSError, SQLAlchemyError) as exc:
        raise fail(f"cannot read the audit trail: {describe(exc)}", 2) from None


def _load_checkpoint(path: Path) -> dict[int, tuple[int, str]]:
    try:
        data = json.loads(path.read_text())
        return {int(lane): (int(head["position"]), str(head["hash"])) for lane, head in data["lanes"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise fail(f"cannot read the checkpoint {path}: {type(exc).__name__}: {exc}", 2) from None


@audit.command("verify")
def verify_command(
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="a file written by `safeflag audit checkpoint` earlier: its rows must still be there")]
    = None,
) -> None:
    """Check every row of the audit trail against its hash chain (exit 1 when tampering is found)."""
    expected = _load_checkpoint(checkpoint) if checkpoint is not None else None
    report = _run(expected)
    for finding in report.findings:
        print(finding)
    lanes = len(report.heads)
    if report.clean:
        print(f"audit trail verified: {report.rows} rows in {lanes} lane(s)")
        return
    print(f"audit trail NOT verified: {len(report.findings)} problem(s) in {report.rows} rows in {lanes} lane(s)")
    raise typer.Exit(1)


@audit.command("checkpoint")
def checkpoint_command() -> None:
    """Print each lane's last position and hash (JSON) after verifying the trail; keep it elsewhere."""
    report = _run()
    if not report.clean:
        for finding in report.findings:
            print(finding)
        raise fail("the audit trail does not verify: no checkpoint written", 1)
    lanes = {str(lane): {"position": pos, "hash": digest} for lane, (pos, digest) in sorted(report.heads.items())}
    print(json.dumps({"rows": report.rows, "lanes": lanes}, indent=1))


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")
