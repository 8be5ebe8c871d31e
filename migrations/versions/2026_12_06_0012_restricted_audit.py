"""restricted audit: AuditEvents about restricted records, stored before they were labelled, get the label

An AuditEvent about a restricted record is restricted to that record's readers (app/security/labels.py,
`audit_restriction`): labelled R (`meta.security`, with its `_security` index row) and kept as written by
the record's organisation (`resource.created_by_org`). This revision does the same to the AuditEvents
stored before it, as far as they show it: an entity carrying an R or V label (a read or write of the
record), a read refused for the record's label (its outcomeDesc), and any access by a
`sexual-health-clinician`, whose organisation (the PROV agent) stands as the writer. A search that showed
a restricted record did not record which records it showed; those stay as they are.

Revision ID: 20261206_0012
Revises: 20261206_0011
Create Date: 2026-12-06 16:45:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261206_0012"
down_revision = "20261206_0011"
branch_labels = None
depends_on = None

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ROLE_SYSTEM = "https://fhir.safeflag.example/CodeSystem/user-role"
R = {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}
REFUSED = "is restricted; only safeguarding leads and the organisation that wrote it may see it"
BATCH = 1000
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
resource = sa.table("resource", sa.column("pk"), sa.column("res_type"), sa.column("res_id"),
                    sa.column("deleted"), sa.column("content", JSON), sa.column("created_by_org"))
resource_version = sa.table("resource_version", sa.column("resource_pk"), sa.column("version_id"),
                            sa.column("content", JSON))
idx_token = sa.table("idx_token", sa.column("resource_pk"), sa.column("res_type"), sa.column("param"),
                     sa.column("system"), sa.column("code"))


def _codes(concept: Any) -> list[tuple[Any, Any]]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [(c.get("system"), c.get("code")) for c in codings or [] if isinstance(c, dict)]


def _about(event: dict[str, Any]) -> tuple[bool, set[str], set[str | None]]:
    """(restricted, records named `Type/id`, organisations that stand as writer) of one stored AuditEvent."""
    named: set[str] = set()
    orgs: set[str | None] = set()
    restricted = False
    entities = [e for e in event.get("entity") or [] if isinstance(e, dict)]
    what = [str((e.get("what") or {}).get("reference") or "") for e in entities]
    for entity, ref in zip(entities, what, strict=True):
        labels = [c for c in entity.get("securityLabel") or [] if isinstance(c, dict)]
        if any(c.get("system") == CONFIDENTIALITY and c.get("code") in ("R", "V") for c in labels):
            restricted = True
            named.add("/".join(ref.split("/")[:2]))
    if event.get("outcome") == "4" and REFUSED in str(event.get("outcomeDesc") or ""):
        restricted = True
        named.update("/".join(ref.split("/")[:2]) for ref in what if ref.count("/") >= 1 and
                      not ref.startswith("Patient/"))
    agents = [a for a in event.get("agent") or [] if isinstance(a, dict)]
    if any((ROLE_SYSTEM, "sexual-health-clinician") in _codes(r) for a in agents for r in a.get("role") or []):
        restricted = True
        orgs.update((a.get("who") or {}).get("reference") for a in agents
                    if ("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV") in _codes(a.get("type")))
    return restricted, named, orgs


def upgrade() -> None:
    bind = op.get_bind()
    text = sa.cast(resource.c.content, sa.Text)
    candidates = (
        sa.select(resource.c.pk, resource.c.content)
        .where(resource.c.res_type == "AuditEvent", resource.c.deleted.is_(False),
               sa.or_(text.like("%v3-Confidentiality%"), text.like("%sexual-health-clinician%"),
                      text.like(f"%{REFUSED}%")))
        .order_by(resource.c.pk)
    )
    last = 0
    while True:
        rows = bind.execute(candidates.where(resource.c.pk > last).limit(BATCH)).all()
        if not rows:
            break
        last = rows[-1][0]
        for pk, content in rows:
            if not isinstance(content, dict):
                continue
            meta = content.get("meta") if isinstance(content.get("meta"), dict) else {}
            if any(isinstance(c, dict) and c.get("system") == CONFIDENTIALITY for c in meta.get("security") or []):
                continue
            restricted, named, orgs = _about(content)
            if not restricted:
                continue
            for ref in sorted(named):
                rtype, _, rid = ref.partition("/")
                orgs.add(bind.execute(sa.select(resource.c.created_by_org).where(
                    resource.c.res_type == rtype, resource.c.res_id == rid)).scalar_one_or_none())
            org = next(iter(orgs)) if len(orgs) == 1 else None
            labelled = {**content, "meta": {**meta, "security": [*(meta.get("security") or []), dict(R)]}}
            bind.execute(sa.update(resource).where(resource.c.pk == pk).values(content=labelled, created_by_org=org))
            bind.execute(sa.update(resource_version).where(resource_version.c.resource_pk == pk)
                         .values(content=labelled))  # an AuditEvent has one version
            bind.execute(sa.insert(idx_token).values(resource_pk=pk, res_type="AuditEvent", param="_security",
                                                     system=CONFIDENTIALITY, code="R"))


def downgrade() -> None:
    pass  # the labels stay: without this revision's code they are ordinary labels
