"""rollups_day: the day tier of rollups, for the bulk period extract

Revision ID: 0018
Revises: 0017

`rollups_day` holds per UTC day what `rollups` holds per 15-minute bucket (count, sum, min, max and the
latest event); the fold keeps both in one transaction (metering/rollup.py), and `period_columns` reads
whole days from it. The upgrade fills it from the existing buckets; the latest event of a day is its
bucket with the greatest (latest_ts_us, latest_event_id).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

EVENT_ID = sa.String(length=128).with_variant(sa.String(length=128, collation="C"), "postgresql")
DAY_US = 86_400 * 1_000_000


def upgrade() -> None:
    op.create_table(
        "rollups_day",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("customer", sa.String(length=256), nullable=False),
        sa.Column("group_key", sa.String(length=2048), nullable=False),
        sa.Column("day_us", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("value_scale", sa.SmallInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("sum_units", sa.BigInteger(), nullable=False),
        sa.Column("min_units", sa.BigInteger(), nullable=False),
        sa.Column("max_units", sa.BigInteger(), nullable=False),
        sa.Column("latest_ts_us", sa.BigInteger(), nullable=False),
        sa.Column("latest_event_id", EVENT_ID, nullable=False),
        sa.Column("latest_units", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "meter", "customer", "group_key", "day_us", name=op.f("pk_rollups_day")),
        sqlite_with_rowid=False,
    )
    day = f"bucket_us - ((bucket_us % {DAY_US}) + {DAY_US}) % {DAY_US}"  # floor, also before 1970
    op.execute(
        "INSERT INTO rollups_day (tenant_id, meter, customer, group_key, day_us, value_scale, events, sum_units,"
        " min_units, max_units, latest_ts_us, latest_event_id, latest_units)"
        " SELECT tenant_id, meter, customer, group_key, day_us, max(value_scale), sum(events), sum(sum_units),"
        " min(min_units), max(max_units), max(CASE WHEN rank = 1 THEN latest_ts_us END),"
        " max(CASE WHEN rank = 1 THEN latest_event_id END), max(CASE WHEN rank = 1 THEN latest_units END)"
        f" FROM (SELECT *, {day} AS day_us, row_number() OVER (PARTITION BY tenant_id, meter, customer, group_key,"
        f" {day} ORDER BY latest_ts_us DESC, latest_event_id DESC) AS rank FROM rollups) AS b"
        " GROUP BY tenant_id, meter, customer, group_key, day_us"
    )


def downgrade() -> None:
    op.drop_table("rollups_day")
