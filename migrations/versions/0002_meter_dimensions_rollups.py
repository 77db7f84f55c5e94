"""meters: unit, filter, group_by; rollups

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:37:36.687830
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollups",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("group_key", sa.String(length=2048), nullable=False),
        sa.Column("bucket_us", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("value_scale", sa.SmallInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("sum_units", sa.BigInteger(), nullable=False),
        sa.Column("min_units", sa.BigInteger(), nullable=False),
        sa.Column("max_units", sa.BigInteger(), nullable=False),
        sa.Column("latest_ts_us", sa.BigInteger(), nullable=False),
        sa.Column(
            "latest_event_id",
            sa.String(length=128).with_variant(sa.String(length=128, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("latest_units", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "meter", "customer", "group_key", "bucket_us", name=op.f("pk_rollups")),
    )
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unit", sa.String(length=32), server_default="", nullable=False))
        batch_op.add_column(sa.Column("filter", sa.Text(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("group_by", sa.Text(), server_default="[]", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.drop_column("group_by")
        batch_op.drop_column("filter")
        batch_op.drop_column("unit")

    op.drop_table("rollups")
