"""ingest watermark: rollups folded after the ack, from a journal of unfolded commits

Revision ID: 0016
Revises: 0014

* `ingest_pending`: one row per tenant per ingest commit whose events are stored but not yet folded into
  `rollups`; written in the commit's transaction, deleted in the fold's (metering/fold.py). Readers add
  the events these rows name to the rollups, so queries stay exact while the fold runs behind the ack.
* `rollup_overflows`: buckets whose total left 64 bits when a commit was folded into them; queries that
  read such a bucket refuse instead of answering a total that is not exact.

Downgrading folds nothing: run the server (or `metering.fold.catch_up`) until `ingest_pending` is empty
first, or the rollups miss the events it names (`rebuild` recomputes them from raw events either way).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_pending",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("lo", sa.BigInteger(), nullable=False),
        sa.Column("hi", sa.BigInteger(), nullable=False),
        sa.Column("xid", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("committed_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_pending")),
    )
    op.create_index(op.f("ix_ingest_pending_tenant_id"), "ingest_pending", ["tenant_id"], unique=False)
    op.create_table(
        "rollup_overflows",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("group_key", sa.String(length=2048), nullable=False),
        sa.Column("bucket_us", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "meter", "customer", "group_key", "bucket_us", name=op.f("pk_rollup_overflows")
        ),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("rollup_overflows")
    op.drop_index(op.f("ix_ingest_pending_tenant_id"), table_name="ingest_pending")
    op.drop_table("ingest_pending")
