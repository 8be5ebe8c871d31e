"""A failed statement's SQL reaches the logs only as a short excerpt, and never its parameters."""

from __future__ import annotations

import logging
import re
import sqlite3
import sys

import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app.observability import SQL_EXCERPT, JsonFormatter


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
