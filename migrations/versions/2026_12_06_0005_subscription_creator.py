"""subscription creator: tag each stored Subscription with the client that created it

A Subscription now belongs to the organisation (`resource.created_by_org`) and client that created it,
recorded as a `meta.tag` (system https://fhir.safeflag.example/CodeSystem/created-by-client, code the
creating token's `sub`) and its `_tag` index row. Subscriptions stored before this revision get the tag
from the creator claims their delivery state kept (`subscription_state.owner`); the current version's
row is tagged too, so that a vread of it answers as a read. One without such claims stays untagged:
then only admin reaches it.

Revision ID: 20261206_0005
Revises: 20261126_0004
Create Date: 2026-12-06 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261206_0005"
down_revision = "20261126_0004"
branch_labels = None
depends_on = None

CREATOR_SYSTEM = "https://fhir.safeflag.example/CodeSystem/created-by-client"
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
resource = sa.table("resource", sa.column("pk"), sa.column("res_type"), sa.column("res_id"),
                    sa.column("version_id"), sa.column("deleted"), sa.column("content", JSON))
resource_version = sa.table("resource_version", sa.column("resource_pk"), sa.column("version_id"),
                            sa.column("content", JSON))
subscription_state = sa.table("subscription_state", sa.column("sub_id"), sa.column("owner", JSON))
idx_token = sa.table("idx_token", sa.column("resource_pk"), sa.column("res_type"), sa.column("param"),
                     sa.column("system"), sa.column("code"))


def _tagged(content: dict, sub: str) -> dict:
    meta = dict(content.get("meta") or {})
    tags = [t for t in meta.get("tag") or [] if not (isinstance(t, dict) and t.get("system") == CREATOR_SYSTEM)]
    meta["tag"] = [*tags, {"system": CREATOR_SYSTEM, "code": sub}]
    return {**content, "meta": meta}


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(resource.c.pk, resource.c.version_id, resource.c.deleted, resource.c.content,
                  subscription_state.c.owner)
        .select_from(resource.join(subscription_state, subscription_state.c.sub_id == resource.c.res_id))
        .where(resource.c.res_type == "Subscription")
    ).all()
    for pk, version_id, deleted, content, owner in rows:
        sub = (owner or {}).get("sub") if isinstance(owner, dict) else None
        if not isinstance(sub, str) or not sub or not isinstance(content, dict):
            continue
        bind.execute(sa.update(resource).where(resource.c.pk == pk).values(content=_tagged(content, sub)))
        current = bind.execute(sa.select(resource_version.c.content).where(
            resource_version.c.resource_pk == pk, resource_version.c.version_id == version_id)).scalar_one_or_none()
        if isinstance(current, dict):
            bind.execute(sa.update(resource_version).where(
                resource_version.c.resource_pk == pk, resource_version.c.version_id == version_id,
            ).values(content=_tagged(current, sub)))
        if not deleted:  # a deleted resource has no index rows
            bind.execute(sa.delete(idx_token).where(idx_token.c.resource_pk == pk, idx_token.c.param == "_tag",
                                                    idx_token.c.system == CREATOR_SYSTEM))
            bind.execute(sa.insert(idx_token).values(resource_pk=pk, res_type="Subscription", param="_tag",
                                                     system=CREATOR_SYSTEM, code=sub))


def downgrade() -> None:
    pass  # the tags stay: without this revision's code they are ordinary tags
