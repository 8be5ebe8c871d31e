"""The database triggers that keep the audit trail append-only (migration 20261206_0017).

`audit_event` and `audit_event_ref` refuse every UPDATE, on PostgreSQL and SQLite alike and whoever
connects. A DELETE is refused too, except the sanctioned removal of a lane's start when records are
archived (app/security/audit_archive.py): the lane's cut is recorded in `audit_event_cut` first, and the
triggers then allow deleting the rows up to it and their reference rows. A cut only moves forward and
is removed only once its lane has no rows. PostgreSQL also refuses TRUNCATE, which skips row triggers.

This stops changes made through SQL by mistake or by a user without DDL rights; someone who can drop
triggers can still tamper, and `safeflag audit verify` with checkpoints kept elsewhere shows it.
"""

from __future__ import annotations

REFUSED = "audit trail is append-only"
TABLES = ("audit_event", "audit_event_ref", "audit_event_cut")
# (trigger, table, event, when the change is refused; OLD/NEW are the row)
RULES = (
    ("audit_event_no_update", "audit_event", "UPDATE", "TRUE"),
    ("audit_event_no_delete", "audit_event", "DELETE",
     "NOT EXISTS (SELECT 1 FROM audit_event_cut c WHERE c.lane = OLD.lane AND c.position >= OLD.position)"),
    ("audit_event_ref_no_update", "audit_event_ref", "UPDATE", "TRUE"),
    ("audit_event_ref_no_delete", "audit_event_ref", "DELETE",
     "EXISTS (SELECT 1 FROM audit_event e WHERE e.event_id = OLD.event_id)"),
    ("audit_event_cut_forward", "audit_event_cut", "UPDATE", "NEW.position < OLD.position OR NEW.lane <> OLD.lane"),
    ("audit_event_cut_no_delete", "audit_event_cut", "DELETE",
     "EXISTS (SELECT 1 FROM audit_event e WHERE e.lane = OLD.lane)"),
)


def create_statements(dialect: str) -> list[str]:
    """The DDL that installs the triggers on `dialect` ("postgresql" or "sqlite")."""
    out = []
    for name, table, event, refused in RULES:
        message = f"{REFUSED}: {event} on {table} refused"
        if dialect == "postgresql":
            keep = "OLD" if event == "DELETE" else "NEW"
            function = (f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                        f"IF {refused} THEN RAISE EXCEPTION '{message}' USING ERRCODE = 'insufficient_privilege'; "
                        f"END IF; RETURN {keep}; END $$")
            out += [function,
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"]
        else:
            cond = "1" if refused == "TRUE" else refused
            out.append(f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW WHEN {cond} "
                       f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
    if dialect == "postgresql":
        out.append("CREATE FUNCTION audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   f"RAISE EXCEPTION '{REFUSED}: TRUNCATE refused' USING ERRCODE = 'insufficient_privilege'; END $$")
        out += [f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate()" for table in TABLES]
    return out


def drop_statements(dialect: str) -> list[str]:
    """The DDL that removes them again (the migration's downgrade)."""
    if dialect != "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name}" for name, *_ in RULES]
    out = [f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}" for table in TABLES]
    out.append("DROP FUNCTION IF EXISTS audit_no_truncate()")
    for name, table, *_ in RULES:
        out += [f"DROP TRIGGER IF EXISTS {name} ON {table}", f"DROP FUNCTION IF EXISTS {name}()"]
    return out
