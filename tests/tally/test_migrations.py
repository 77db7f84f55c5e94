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
    for table in ("rollups", "rollup_values", "gauge_points"):
        assert ddl[table].rstrip().upper().endswith("WITHOUT ROWID"), table
    assert not ddl["events"].upper().endswith("WITHOUT ROWID")  # events stay in arrival (rowid) order
