"""Records' contents kept in memory between requests, on PostgreSQL: a search's rows come without their
JSON, which is taken from memory when this process has read that very row before, and read in one more
statement when it has not.

Why: a page of the web app reads some 600 records at every view (the lead's desk: 200 Tasks, their
Communications and Encounters). Turning each stored JSONB into text, sending it and decoding it again
was about a fifth of the page's server time, for records that had not changed since the last view.

What is kept, and why it can never be stale: a row's content under (pk, xmin, version_id). `xmin` is
the PostgreSQL transaction that wrote that row version; every write of a row gives it the writing
transaction's `xmin`, and a version number above the last, and no two transactions share one, so the
key names one row version only, even one written by a transaction that later rolled back, or one in a
database emptied and filled again. A row whose key is not known is read again, whole, by its pk (a row
changed meanwhile comes as it is now; one deleted meanwhile is left out, as READ COMMITTED allows any
later statement of the search to see). SQLite sends the content with the rows, as before (its rows
are read in-process, and it has no `xmin`).

The kept dicts are shared by every request that reads that row: nothing may change one in place
(every writer builds a new dict). The test suite checks it (`check_unchanged`): each time a kept content is
taken it is compared with its JSON as first read, and a difference raises.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import ARRAY, BigInteger, Engine, any_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from app.storage.repository import row_to_stored
from app.storage.tables import JsonDoc, resource
from app.stored import StoredResource

# What is kept per database and process, by the size PostgreSQL stores the JSON in (pg_column_size): some
# 10,000 records of the demo's kind (~0.8 KB stored each, ~3.8 KB in memory once decoded: some 40 MB at
# most; a view of the lead's desk with 200 notices reads ~600). A larger record (a Binary's data, an
# attachment carried inline) is never kept: read each time.
KEPT_BYTES = 8 * 1024 * 1024
LARGEST_KEPT = 64 * 1024


class _Content(ColumnElement[Any]):
    """`resource.content` on SQLite; NULL on PostgreSQL (see the module docstring)."""

    # no attributes: its SQL is cached with the statement's (SQLAlchemy's own type for it: a list)
    _traverse_internals: list[tuple[str, InternalTraversal]] = []  # noqa: RUF012
    inherit_cache = True
    type = JsonDoc


class _Stamp(ColumnElement[Any]):
    """`resource.xmin` on PostgreSQL (the transaction that wrote the row version); NULL on SQLite."""

    _traverse_internals: list[tuple[str, InternalTraversal]] = []  # noqa: RUF012
    inherit_cache = True
    type = BigInteger()


@compiles(_Content)
def _content(_element: _Content, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(resource.c.content, **kw))


@compiles(_Content, "postgresql")
def _no_content(_element: _Content, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "NULL"


@compiles(_Stamp)
def _no_stamp(_element: _Stamp, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "NULL"


@compiles(_Stamp, "postgresql")
def _stamp(_element: _Stamp, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(resource.c.pk, **kw)).removesuffix("pk") + "xmin"


# a search's columns: those of a StoredResource, the content left to `stored`, then the row's stamp
LEAN_COLS = (resource.c.pk, resource.c.res_type, resource.c.res_id, resource.c.version_id, resource.c.last_updated,
             resource.c.deleted, _Content(), resource.c.created_by_org, _Stamp())
_WHOLE = select(*LEAN_COLS[:6], resource.c.content, resource.c.created_by_org, _Stamp(),
                func.pg_column_size(resource.c.content)).where(
    resource.c.pk == any_(bindparam("pks", type_=ARRAY(BigInteger))), resource.c.deleted.is_(False))

_Key = tuple[int, int, int]


class _Kept:
    """The contents kept for one database (least recently used first), with their stored sizes."""

    def __init__(self) -> None:
        self.rows: OrderedDict[_Key, tuple[Any, int]] = OrderedDict()
        self.size = 0

    def get(self, key: _Key) -> dict[str, Any] | None:
        held = self.rows.get(key)
        if held is None:
            return None
        self.rows.move_to_end(key)
        if _checking:
            (content, first), _size = held
            if orjson.dumps(content) != first:
                raise AssertionError(f"the kept content of row {key[0]} was changed in place")
            return content  # type: ignore[no-any-return]
        return held[0]  # type: ignore[no-any-return]

    def put(self, key: _Key, content: dict[str, Any], size: int) -> None:
        if size > LARGEST_KEPT or key in self.rows:
            return
        self.rows[key] = ((content, orjson.dumps(content)) if _checking else content), size
        self.size += size
        while self.size > KEPT_BYTES:
            self.size -= self.rows.popitem(last=False)[1][1]


_by_engine: weakref.WeakKeyDictionary[Engine, _Kept] = weakref.WeakKeyDictionary()
_checking = False


def check_unchanged(on: bool) -> None:
    """Test runs: compare a kept content with its JSON as first read each time it is taken (see the
    module docstring). Contents kept before are dropped."""
    global _checking
    _checking = on
    _by_engine.clear()


def changed_in_place() -> list[int]:
    """The pks of the kept records whose content is no longer their JSON as first read (checked only
    while `check_unchanged` is on; the test suite asks after every test)."""
    return sorted(key[0] for kept in list(_by_engine.values()) for key, ((content, first), _size) in kept.rows.items()
                  if orjson.dumps(content) != first) if _checking else []


def _kept(session: AsyncSession) -> _Kept:
    engine = session.get_bind().engine  # a session bound to one connection: its engine's
    kept = _by_engine.get(engine)
    if kept is None:
        kept = _by_engine[engine] = _Kept()
    return kept


async def stored(session: AsyncSession, rows: Sequence[Sequence[Any]]) -> list[StoredResource]:
    """The records of rows selected with `LEAN_COLS`, in their order, with their contents (see the
    module docstring): one more statement when some are not kept."""
    if not rows or rows[0][8] is None:  # SQLite: the contents came with the rows
        return [row_to_stored(r) for r in rows]
    kept = _kept(session)
    out: list[StoredResource | None] = []
    missing: dict[int, int] = {}  # pk -> its place in `out`
    for r in rows:
        content = kept.get((r[0], r[8], r[3]))
        if content is None:
            missing[r[0]] = len(out)
            out.append(None)
        else:
            out.append(StoredResource(r[0], r[1], r[2], r[3], r[4], r[5], content, r[7]))
    if missing:
        for r in (await session.execute(_WHOLE, {"pks": list(missing)})).all():
            out[missing[r[0]]] = row_to_stored(r)
            kept.put((r[0], r[8], r[3]), r[6], r[9])
    return [s for s in out if s is not None]
