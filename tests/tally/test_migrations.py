"""Alembic history: upgrade → downgrade → upgrade on both databases, and models == migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from tally.db import TARGET_METADATA as target_metadata
from tally.db import alembic_config, current_revision, downgrade, make_engine, upgrade


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    upgrade(engine)
    assert current_revision(engine) == head
    assert {"events", "tenants", "api_keys", "meters"} <= set(inspect(engine).get_table_names())
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head
    engine.dispose()


def test_models_match_migrations(db_url: str) -> None:
    """Autogenerate against the migrated schema must find nothing to do."""
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for md in target_metadata for d in compare_metadata(ctx, md)]
    engine.dispose()
    assert diff == []


def test_sqlite_rollup_tables_are_clustered_on_their_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """WITHOUT ROWID is a table option autogenerate cannot see; the migration must still produce it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        ddl = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all())
    engine.dispose()
    for table in ("rollups", "rollups_day", "rollup_values", "gauge_points"):
        assert ddl[table].rstrip().upper().endswith("WITHOUT ROWID"), table
    assert not ddl["events"].upper().endswith("WITHOUT ROWID")  # events stay in arrival (rowid) order


def test_the_day_tier_is_filled_from_existing_buckets(db_url: str) -> None:
    """Revision 0018 fills `rollups_day` from the buckets already stored: each day row is the merge of its
    UTC day's buckets (days before 1970 included), as the fold keeps it."""
    from metering.meter import Aggregation, MeterSpec
    from metering.rollup import BUCKET_US, DAY_US, by_day, stored, stored_days
    from metering.tables import rollups

    engine = make_engine(db_url)
    upgrade(engine, "0017")
    rows = []
    for n, bucket in enumerate([-DAY_US - BUCKET_US, -BUCKET_US, 0, 5 * BUCKET_US, DAY_US - BUCKET_US, DAY_US * 400]):
        for customer in ("a", "b"):
            rows.append(dict(tenant_id=1, meter="m", customer=customer, group_key="", bucket_us=bucket, value_scale=2,
                             events=n + 1, sum_units=10 * n - 25, min_units=-n, max_units=n * n,
                             latest_ts_us=bucket + 7, latest_event_id=f"e{n}{customer}", latest_units=n))  # fmt: skip
    with engine.begin() as conn:
        conn.execute(rollups.insert(), rows)
    upgrade(engine)
    with engine.connect() as conn:
        buckets = stored(conn, 1, "m", MeterSpec(Aggregation.SUM, 2))
        days = stored_days(conn, 1, "m")
    engine.dispose()
    assert len(days) == 2 * 4 and days == by_day(buckets)
