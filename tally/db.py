"""Engines and migrations: the only place that knows how each database is configured.

SQLite: WAL journal (readers never block the writer), `synchronous` from the
settings (FULL by default, so an ack survives power loss), a busy timeout, and
explicit `BEGIN` handling so a writer can take the write lock up front with
`execution_options(sqlite_begin="IMMEDIATE")` instead of failing to upgrade a
read lock halfway through a transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

import invoicing.ledger.tables
import invoicing.platform_tables
import invoicing.tables
from metering import deadline
from metering.rollup import register_sqlite_functions
from metering.tables import metadata as metering_metadata

# Every package registers its tables on one MetaData (so foreign keys to tenants resolve); importing
# the table modules above is what registers them. For Alembic autogenerate and the models-vs-migrations test.
TARGET_METADATA = [metering_metadata]
_REGISTERED = (invoicing.ledger.tables, invoicing.platform_tables, invoicing.tables)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, sqlite_synchronous: str = "FULL", pool_size: int = 8) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            register_sqlite_functions(dbapi_conn)
            # A single long statement stops at the request's deadline too (checkpoint() cannot reach
            # inside SQLite): every 20,000 VM steps, interrupt when the current budget is spent.
            dbapi_conn.set_progress_handler(_budget_spent, 20_000)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "")
            conn.exec_driver_sql(f"BEGIN {mode}".strip())

        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)

        @event.listens_for(engine, "begin")
        def _statement_timeout(conn: Any) -> None:
            # Inside a request, no statement may outlive its budget: PostgreSQL cancels it (57014).
            budget = deadline.current()
            remaining = None if budget is None else budget.remaining()
            if remaining is not None:
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(remaining * 1000))}")

        return engine
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB"
    )


def _budget_spent() -> int:
    budget = deadline.current()
    return 1 if budget is not None and budget.spent else 0


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
