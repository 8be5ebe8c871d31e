"""A tripwire for app/storage/buffer.py, installed for the whole test suite by tests/conftest.py.

Rows a `Repository` queues are written only when someone calls `flush()`; nothing flushes behind the
caller's back. Every test therefore also checks that no statement reads or changes a table while rows
for that table are still queued in the same transaction, that no transaction commits with rows
queued, and that no savepoint opens past them: each would lose or hide the transaction's own rows.
"""

from __future__ import annotations

import re

from sqlalchemy import TextClause, event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql.util import find_tables

from app.storage.buffer import PENDING


class QueuedRowsMissed(AssertionError):
    pass


def _queued_tables(session: Session) -> set[str]:
    return {stmt.table.name for stmt in session.info.get(PENDING) or {}}


def _before_statement(state: ORMExecuteState) -> None:
    queued = _queued_tables(state.session)
    if not queued:
        return
    stmt = state.statement
    if isinstance(stmt, TextClause):
        touched = {name for name in queued if re.search(rf"\b{name}\b", stmt.text)}
    else:
        touched = queued & {t.name for t in find_tables(stmt, check_columns=True, include_aliases=True,
                                                        include_joins=True, include_selects=True,
                                                        include_crud=True) if hasattr(t, "name")}
    if touched:
        raise QueuedRowsMissed(f"a statement reads {sorted(touched)} with rows still queued: flush first\n{stmt}")


def _before_commit(session: Session) -> None:
    if _queued_tables(session):
        raise QueuedRowsMissed("COMMIT with rows still queued: the unit of work must flush first")


def _on_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested and _queued_tables(session):
        raise QueuedRowsMissed("a savepoint opened with rows queued: use Repository.savepoint()")


def install() -> None:
    event.listen(Session, "do_orm_execute", _before_statement)
    event.listen(Session, "before_commit", _before_commit)
    event.listen(Session, "after_transaction_create", _on_transaction)

