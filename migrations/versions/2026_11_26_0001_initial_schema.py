"""initial schema

Revision ID: 20261126_0001
Revises: 
Create Date: 2026-11-26 06:55:18.149385
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '20261126_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('resource',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.DateTime(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by_org', sa.String(length=256), nullable=True),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_resource')),
    sa.UniqueConstraint('res_type', 'res_id', name='uq_resource_type_id')
    )
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.create_index('ix_resource_type_updated', ['res_type', 'last_updated'], unique=False)

    op.create_table('idx_date',
    sa.Column('resource_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('low', sa.DateTime(), nullable=False),
    sa.Column('high', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['resource_pk'], ['resource.pk'], name=op.f('fk_idx_date_resource_pk_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_idx_date_high', ['res_type', 'param', 'high'], unique=False)
        batch_op.create_index('ix_idx_date_low', ['res_type', 'param', 'low'], unique=False)
        batch_op.create_index('ix_idx_date_resource', ['resource_pk'], unique=False)

    op.create_table('idx_reference',
    sa.Column('resource_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=256), nullable=True),
    sa.Column('url', sa.String(length=1024), nullable=True),
    sa.Column('ident_system', sa.String(length=512), nullable=True),
    sa.Column('ident_value', sa.String(length=512), nullable=True),
    sa.ForeignKeyConstraint(['resource_pk'], ['resource.pk'], name=op.f('fk_idx_reference_resource_pk_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.create_index('ix_idx_reference_identifier', ['res_type', 'param', 'ident_value'], unique=False)
        batch_op.create_index('ix_idx_reference_lookup', ['res_type', 'param', 'target_id', 'target_type'], unique=False)
        batch_op.create_index('ix_idx_reference_resource', ['resource_pk'], unique=False)
        batch_op.create_index('ix_idx_reference_target', ['target_type', 'target_id'], unique=False)

    op.create_table('idx_string',
    sa.Column('resource_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('norm', sa.String(length=512), nullable=False),
    sa.Column('exact', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['resource_pk'], ['resource.pk'], name=op.f('fk_idx_string_resource_pk_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.create_index('ix_idx_string_lookup', ['res_type', 'param', 'norm'], unique=False)
        batch_op.create_index('ix_idx_string_resource', ['resource_pk'], unique=False)

    op.create_table('idx_token',
    sa.Column('resource_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('system', sa.String(length=512), nullable=True),
    sa.Column('code', sa.String(length=512), nullable=True),
    sa.ForeignKeyConstraint(['resource_pk'], ['resource.pk'], name=op.f('fk_idx_token_resource_pk_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.create_index('ix_idx_token_lookup', ['res_type', 'param', 'code', 'system'], unique=False)
        batch_op.create_index('ix_idx_token_resource', ['resource_pk'], unique=False)

    op.create_table('resource_version',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('resource_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.DateTime(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['resource_pk'], ['resource.pk'], name=op.f('fk_resource_version_resource_pk_resource'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_resource_version')),
    sa.UniqueConstraint('resource_pk', 'version_id', name='uq_resource_version_pk_vid')
    )
    with op.batch_alter_table('resource_version', schema=None) as batch_op:
        batch_op.create_index('ix_resource_version_type_updated', ['res_type', 'last_updated'], unique=False)
        batch_op.create_index('ix_resource_version_updated', ['last_updated'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('resource_version', schema=None) as batch_op:
        batch_op.drop_index('ix_resource_version_updated')
        batch_op.drop_index('ix_resource_version_type_updated')

    op.drop_table('resource_version')
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_token_resource')
        batch_op.drop_index('ix_idx_token_lookup')

    op.drop_table('idx_token')
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_string_resource')
        batch_op.drop_index('ix_idx_string_lookup')

    op.drop_table('idx_string')
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_reference_target')
        batch_op.drop_index('ix_idx_reference_resource')
        batch_op.drop_index('ix_idx_reference_lookup')
        batch_op.drop_index('ix_idx_reference_identifier')

    op.drop_table('idx_reference')
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_date_resource')
        batch_op.drop_index('ix_idx_date_low')
        batch_op.drop_index('ix_idx_date_high')

    op.drop_table('idx_date')
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.drop_index('ix_resource_type_updated')

    op.drop_table('resource')

