"""meters: unique_count property, gauge time unit; rollups: gauge integral; distinct values; gauge points

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

EVENT_ID = sa.String(length=128).with_variant(sa.String(length=128, collation="C"), "postgresql")


def _on_sqlite() -> Literal["always", "auto"]:
    """Rebuild the table on SQLite (to change WITHOUT ROWID); plain ALTERs elsewhere."""
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unique_property", sa.String(length=64), server_default="", nullable=False))
        batch_op.add_column(sa.Column("time_unit", sa.String(length=8), server_default="", nullable=False))
    # On SQLite the table is rebuilt WITHOUT ROWID (the primary key becomes the table); elsewhere the
    # recreate flag is ignored and the columns are simply added.
    with op.batch_alter_table(
        "rollups", schema=None, recreate=_on_sqlite(), table_kwargs={"sqlite_with_rowid": False}
    ) as batch_op:
        batch_op.add_column(sa.Column("gauge_first_ts_us", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("gauge_integral", sa.BigInteger(), nullable=True))
    op.create_table(
        "rollup_values",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("group_key", sa.String(length=2048), nullable=False),
        sa.Column("bucket_us", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "meter", "customer", "group_key", "bucket_us", "value", name=op.f("pk_rollup_values")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "gauge_points",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("group_key", sa.String(length=2048), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", EVENT_ID, nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "meter", "customer", "group_key", "ts_us", "event_id", name=op.f("pk_gauge_points")
        ),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("gauge_points")
    op.drop_table("rollup_values")
    with op.batch_alter_table(
        "rollups", schema=None, recreate="auto", table_kwargs={"sqlite_with_rowid": True}
    ) as batch_op:
        batch_op.drop_column("gauge_integral")
        batch_op.drop_column("gauge_first_ts_us")
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.drop_column("time_unit")
        batch_op.drop_column("unique_property")
