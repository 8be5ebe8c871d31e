"""Verifying the audit trail's hash chains (`safeflag audit verify`, app/security/audit_cli.py).

Walks every lane of `audit_event` (app/storage/audit_tables.py) in position order and reports, with
its lane and position:
- a row whose stored hash does not match its contents (a column or the AuditEvent JSON changed, or the
  row was moved to another position: the position is hashed too);
- a search column that does not match the row's JSON (changed on its own), and likewise the rows that
  `type` and `subtype` searches read (`audit_event_ref`: one added, removed or changed); a coding row
  of an event the trail does not hold is reported by its event id;
- a row that does not follow the one before it (its `prev_hash` is not the previous row's hash: a row
  was removed, inserted or reordered before it);
- positions missing from a lane (rows removed, or a lane that does not start at 1, or right after its
  archived start: `audit_event_cut`, app/security/audit_archive.py);
- against a checkpoint recorded earlier (`checkpoint()`: each lane's last position and hash, kept
  outside the database), a checkpointed row that is gone or changed: the tail was cut off or the
  chain recomputed.
Each finding is reported once, at the first row it concerns; the walk continues from the stored hash,
so one changed row does not make every later row look changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, tuple_

from app.security.audit_archive import cuts
from app.security.audit_trail import coded_refs
from app.storage.audit_tables import (
    CODED_PARAMS,
    GENESIS,
    SEARCH_COLUMNS,
    audit_event,
    audit_event_ref,
    chain_hash,
    row_digest_input,
    search_columns,
)

CODED_ROWS = (*CODED_PARAMS, *(name + "|" for name in CODED_PARAMS))  # audit_event_ref.param of coding rows
Coded = dict[str, set[tuple[str, str]]]  # event id -> its coding rows (param, ref)

BATCH = 2000


@dataclass
class Report:
    rows: int = 0
    heads: dict[int, tuple[int, str]] = field(default_factory=dict)  # lane -> (last position, its hash)
    findings: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings


def _coded(conn: Connection, event_ids: list[str]) -> Coded:
    """The coding rows the database holds for `event_ids`."""
    r = audit_event_ref.c
    found: Coded = {event_id: set() for event_id in event_ids}
    for param, ref, event_id in conn.execute(select(r.param, r.ref, r.event_id)
                                             .where(r.param.in_(CODED_ROWS), r.event_id.in_(event_ids))):
        found[event_id].add((param, ref))
    return found


def _orphans(conn: Connection) -> list[str]:
    """Event ids of coding rows without an audit row (rows inserted on their own)."""
    r, e = audit_event_ref.c, audit_event.c
    stmt = (select(r.event_id).where(r.param.in_(CODED_ROWS), ~select(e.seq).where(e.event_id == r.event_id).exists())
            .distinct().order_by(r.event_id))
    return list(conn.execute(stmt).scalars())


def _check_row(report: Report, row: Any, expected: int, prev: str, coded: Coded) -> None:
    where = f"lane {row.lane} position {row.position}"
    if row.position > expected:
        missing = f"{expected}" if row.position == expected + 1 else f"{expected}-{row.position - 1}"
        report.findings.append(f"lane {row.lane}: position(s) {missing} missing (rows removed)")
    if row.prev_hash != prev:
        report.findings.append(f"{where}: does not follow the row before it (a row was removed, inserted or "
                               "reordered)")
    digest = chain_hash(row.prev_hash, row_digest_input(row.lane, row.position, row.event_id, row.recorded,
                                                        row.created_by_org, row.content))
    if digest != row.hash:
        report.findings.append(f"{where}: altered (AuditEvent/{row.event_id} does not match its hash)")
    derived = search_columns(row.content) if isinstance(row.content, dict) else {}
    changed = [name for name in SEARCH_COLUMNS if derived.get(name) != getattr(row, name)]
    rows = {(r["param"], r["ref"]) for r in coded_refs(row.content, row.event_id)} if isinstance(row.content, dict) \
        else set()
    changed += [name for name in CODED_PARAMS
                if {r for r in rows if r[0].rstrip("|") == name} != {r for r in coded[row.event_id]
                                                                       if r[0].rstrip("|") == name}]
    if changed:
        report.findings.append(f"{where}: column(s) {', '.join(changed)} altered (they do not match the AuditEvent)")


def verify(conn: Connection, checkpoint: dict[int, tuple[int, str]] | None = None) -> Report:
    """Walk the whole trail; `checkpoint` (lane -> (position, hash)) as `Report.heads` of an earlier run."""
    report = Report()
    t = audit_event.c
    stmt = select(audit_event).order_by(t.lane, t.position).limit(BATCH)
    archived = cuts(conn)
    lane, expected, prev = None, 1, GENESIS
    after: tuple[int, int] | None = None
    while True:
        page = stmt if after is None else stmt.where(tuple_(t.lane, t.position) > tuple_(*after))
        rows = conn.execute(page).all()
        if not rows:
            break
        coded = _coded(conn, [row.event_id for row in rows])
        for row in rows:
            if row.lane != lane:
                cut = archived.get(row.lane, (0, GENESIS))
                lane, expected, prev = row.lane, cut[0] + 1, cut[1]
            _check_row(report, row, expected, prev, coded)
            report.rows += 1
            report.heads[row.lane] = (row.position, row.hash)
            expected, prev = row.position + 1, row.hash
        after = (rows[-1].lane, rows[-1].position)
    report.findings += [f"AuditEvent/{event_id}: type/subtype search rows of an event the trail does not hold "
                        "(its row was removed, or they were inserted)" for event_id in _orphans(conn)]
    for cp_lane, (position, digest) in sorted((checkpoint or {}).items()):
        found = conn.execute(select(t.hash).where(t.lane == cp_lane, t.position == position)).scalar_one_or_none()
        cut_position, cut_hash = archived.get(cp_lane, (0, GENESIS))
        if found is None and position <= cut_position:  # archived since: the cut continues it
            found = cut_hash if position == cut_position else digest
        if found != digest:
            what = "missing (the trail was cut short)" if found is None else "changed (the chain was rewritten)"
            report.findings.append(f"lane {cp_lane} position {position}: checkpointed row {what}")
    return report
