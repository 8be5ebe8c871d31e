"""A failed statement's SQL reaches the logs only as a short excerpt, never its parameters; what SQLite
refuses is answered as the client can act on it, not as a 500."""

from __future__ import annotations

import logging
import re
import sqlite3
import sys

import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app.observability import SQL_EXCERPT, JsonFormatter
from app.storage.failures import as_fhir_error


def test_a_huge_failed_statement_is_logged_as_a_short_excerpt() -> None:
    engine = create_engine("sqlite://", hide_parameters=True)
    ors = " OR ".join(["x = :nhs"] * 5000)
    try:
        with engine.connect() as conn:
            conn.execute(text(f"SELECT 1 WHERE {ors}"), {"nhs": "9990000018"})
    except OperationalError as exc:
        assert isinstance(exc.orig, sqlite3.OperationalError)
        failed = exc
    statement = str(failed)
    assert len(statement) > 40_000  # what SQLAlchemy's own message holds
    try:
        raise failed
    except OperationalError:
        record = logging.LogRecord("safeflag", logging.ERROR, __file__, 1, "unhandled error", (), sys.exc_info())
    line = JsonFormatter().format(record)
    logged = orjson.loads(line)
    assert len(line) < 6_000
    kept = re.search(r"\[SQL: (SELECT 1 WHERE x = \? OR [^\]]*) \.\.\. \((\d+) characters\)\]", logged["exc"])
    assert kept is not None and len(kept.group(1)) == SQL_EXCERPT - len("[SQL: ")
    assert int(kept.group(2)) > 40_000
    assert "Expression tree is too large" in logged["exc"]
    assert "[SQL parameters hidden due to hide_parameters=True]" in logged["exc"]
    engine.dispose()


def test_sqlite_refusals_are_answered_as_the_client_can_act_on_them() -> None:
    """What SQLite refuses as too large is the request's size (400 too-costly); a locked database is
    transient (503 with Retry-After); other errors stay unexpected."""
    engine = create_engine("sqlite://", hide_parameters=True)
    with engine.connect() as conn:
        try:
            conn.execute(text("SELECT 1 WHERE " + " OR ".join(["1 = 1"] * 5000)))
        except OperationalError as exc:
            too_large = as_fhir_error(exc)
        try:
            conn.execute(text("SELECT abs(1, 2)"))  # wrong number of arguments: a bug, not the client's
        except OperationalError as exc:
            assert as_fhir_error(exc) is None
    engine.dispose()
    assert too_large is not None and too_large.status == 400
    assert too_large.outcome() == {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "too-costly",
        "diagnostics": "SF-0962: The request is too large for the database to run; narrow it"}]}
    locked = as_fhir_error(OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked")))
    assert locked is not None and (locked.status, locked.headers) == (503, {"Retry-After": "5"})
    assert locked.outcome()["issue"][0]["diagnostics"] == "SF-0960: The database is busy; retry later"
