"""Tables owned by metering. Every schema change goes through an Alembic revision in `migrations/`.

Why the events table looks the way it does:
- The primary key is the idempotency key `(tenant_id, event_id)`, unique forever:
  enforced by the database, not by a cache with a time window, so it holds
  across restarts and concurrent streams. There is no surrogate id: a second
  index (and a sequence) per row measured 25% slower inserts on PostgreSQL.
- Rows still land in time order: SQLite keeps its implicit rowid (the table's
  own B-tree, append-only) and PostgreSQL appends to its heap, so random event
  ids cost one random index insert, not a random table insert (random UUID
  primary keys on the table itself measured about six times slower).
- On PostgreSQL `event_id` compares with the "C" collation: byte order, the
  cheapest comparison for the hottest index, and the same order as SQLite.
- `value_units` / `value_scale` store the exact decimal value as a fixed-point
  integer (value = units * 10^-scale); no floating point anywhere.
- `ts_us` is microseconds since the epoch (UTC) as an integer, which compares and
  buckets cheaply on both SQLite and PostgreSQL.
- No foreign key from events to tenants: the tenant comes from an authenticated
  API key, and a per-row FK check would tax the hottest insert in the system.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Byte-order comparison on PostgreSQL (SQLite's default BINARY collation is already that).
EventIdType = String(128).with_variant(String(128, collation="C"), "postgresql")

tenants = Table(
    "tenants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False, index=True),
    # First characters of the key, shown in listings so a key can be recognised
    # without storing it.
    Column("prefix", String(16), nullable=False),
    # SHA-256 of the whole key, hex. Keys are 256-bit random secrets, so a fast
    # hash is enough (no password stretching needed) and lookup stays O(1).
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("scopes", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

meters = Table(
    "meters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("code", String(64), nullable=False),
    Column("name", String(256), nullable=False),
    Column("aggregation", String(16), nullable=False),
    Column("value_scale", SmallInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("unit", String(32), nullable=False, server_default=""),
    # Canonical JSON: {"property": ["allowed", "values"]}; events outside it are stored but not counted.
    Column("filter", Text, nullable=False, server_default="{}"),
    # Canonical JSON list of property names whose values split usage into dimensions.
    Column("group_by", Text, nullable=False, server_default="[]"),
    # unique_count: the property whose distinct values are counted ("" for other aggregations).
    Column("unique_property", String(64), nullable=False, server_default=""),
    # gauge: the time unit its integral is expressed in (seat-days: "day"); "" for other aggregations.
    Column("time_unit", String(8), nullable=False, server_default=""),
    UniqueConstraint("tenant_id", "code"),
)

events = Table(
    "events",
    metadata,
    Column("tenant_id", Integer, primary_key=True, autoincrement=False),
    Column("event_id", EventIdType, primary_key=True),
    Column("customer", String(256), nullable=False),
    Column("meter", String(64), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("value_units", BigInteger, nullable=False),
    Column("value_scale", SmallInteger, nullable=False),
    # Canonical JSON (sorted keys, no spaces) or NULL when there are none, so that
    # "same payload" is a plain string comparison.
    Column("properties", Text, nullable=True),
    Column("ingested_at_us", BigInteger, nullable=False),
)


# Pre-aggregated usage per (tenant, meter, customer, dimension values, 15-minute bucket), folded from the
# events after their commit (metering/fold.py); readers add the commits not folded yet (`ingest_pending`),
# so an acked event is in every query at once.
# 15 minutes because every UTC offset in use is a multiple of 15 minutes: any local hour, day or
# month boundary is a bucket boundary, so windows in any time zone are exact without raw events.
def _totals(when: str) -> list[Column[Any]]:
    """The columns both rollup tiers share: the series key, its time (`when`), and its totals."""
    return [
        Column("tenant_id", Integer, primary_key=True, autoincrement=False),
        Column("meter", String(64), primary_key=True),
        Column("customer", String(256), primary_key=True),
        # Canonical JSON object of the meter's group_by values ("" when the meter has no group_by).
        Column("group_key", String(2048), primary_key=True),
        Column(when, BigInteger, primary_key=True, autoincrement=False),
        Column("value_scale", SmallInteger, nullable=False),
        Column("events", BigInteger, nullable=False),
        Column("sum_units", BigInteger, nullable=False),
        Column("min_units", BigInteger, nullable=False),
        Column("max_units", BigInteger, nullable=False),
        # The latest event by (timestamp, event_id): ties broken by event id.
        Column("latest_ts_us", BigInteger, nullable=False),
        Column("latest_event_id", EventIdType, nullable=False),
        Column("latest_units", BigInteger, nullable=False),
    ]


rollups = Table(
    "rollups",
    metadata,
    *_totals("bucket_us"),
    # gauge meters only (NULL otherwise): the bucket's first event time, and the integral of the value
    # from that event to the bucket's end in units x microseconds. The stretch before the first event
    # carries the previous bucket's latest value, which only a query knows; so these two columns plus
    # `latest_units` make buckets chain exactly.
    Column("gauge_first_ts_us", BigInteger, nullable=True),
    Column("gauge_integral", BigInteger, nullable=True),
    # SQLite: the primary key is the table (one B-tree), so a customer's month is one contiguous range
    # and the bulk period extract scans rows in key order without a lookup per row (2x measured).
    sqlite_with_rowid=False,
)

# The day tier: the same totals per UTC day (count, sum, min, max, latest; gauges and distinct counts read
# their own tables). Kept by the fold in the transaction that upserts the 15-minute rows, so a day row is
# always the sum of its day's bucket rows; the bulk period extract reads whole days here (up to 96 times
# fewer rows) and only the partial days at a period's edges from `rollups`.
rollups_day = Table("rollups_day", metadata, *_totals("day_us"), sqlite_with_rowid=False)

# unique_count meters: each distinct property value seen per bucket. A distinct count over any range
# of buckets is COUNT(DISTINCT value) over these rows: exact across buckets, unlike summing per-bucket
# counts (a value seen in two buckets would count twice) or a sketch (approximate; this is billed).
rollup_values = Table(
    "rollup_values",
    metadata,
    Column("tenant_id", Integer, primary_key=True, autoincrement=False),
    Column("meter", String(64), primary_key=True),
    Column("customer", String(256), primary_key=True),
    Column("group_key", String(2048), primary_key=True),
    Column("bucket_us", BigInteger, primary_key=True, autoincrement=False),
    Column("value", String(256), primary_key=True),
    sqlite_with_rowid=False,
)

# gauge meters: every reading, keyed for range scans, so a late or out-of-order reading can recompute
# its bucket's integral exactly without scanning raw events (which are keyed by event id only).
gauge_points = Table(
    "gauge_points",
    metadata,
    Column("tenant_id", Integer, primary_key=True, autoincrement=False),
    Column("meter", String(64), primary_key=True),
    Column("customer", String(256), primary_key=True),
    Column("group_key", String(2048), primary_key=True),
    Column("ts_us", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", EventIdType, primary_key=True),
    Column("units", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# Ingest commits whose events are durable but not yet folded into `rollups` (metering/fold.py). One row per
# tenant per commit, written in the commit's own transaction and deleted in the transaction that folds it,
# so "folded" and "in rollups" change together: a crash between the two leaves the row, and the fold after
# restart does it once. Readers add the events these rows name to the rollups (metering/pending.py).
# Where the events are, without an index on the events table (a second index per event measured 25% slower
# inserts on PostgreSQL):
# - SQLite: `lo`..`hi` is the commit's rowid range (one writer; rowids grow by one per insert); `xid` is 0.
# - PostgreSQL: `lo`..`hi` is the range of heap blocks the commit's rows went to (a TID range scan reads
#   them), and `xid` the inserting transaction's id, which every such row carries as `xmin`: concurrent
#   writers interleave blocks, and the xid tells their rows apart.
# `events` is how many rows of this tenant the commit inserted: the fold checks it found exactly that many.
ingest_pending = Table(
    "ingest_pending",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, nullable=False, index=True),
    Column("lo", BigInteger, nullable=False),
    Column("hi", BigInteger, nullable=False),
    Column("xid", BigInteger, nullable=False),
    Column("events", Integer, nullable=False),
    Column("committed_at_us", BigInteger, nullable=False),
)

# Rollup buckets whose total left 64 bits when the fold added a commit to them. The fold never fails on
# data (the events are acked and stored): it records the bucket here instead, leaves the bucket's stored
# row as it was, and every usage query that reads the bucket refuses with FAILED_PRECONDITION rather than
# answer a total that is not exact. `events` counts the events held out of the row.
rollup_overflows = Table(
    "rollup_overflows",
    metadata,
    Column("tenant_id", Integer, primary_key=True, autoincrement=False),
    Column("meter", String(64), primary_key=True),
    Column("customer", String(256), primary_key=True),
    Column("group_key", String(2048), primary_key=True),
    Column("bucket_us", BigInteger, primary_key=True, autoincrement=False),
    Column("events", BigInteger, nullable=False),
    Column("detail", Text, nullable=False),
    Column("recorded_at_us", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)
