"""Engines and migrations: the only place that knows how each database is configured.

SQLite: WAL journal (readers never block the writer), `synchronous` from the
settings (FULL by default, so an ack survives power loss), a busy timeout, and
explicit `BEGIN` handling so a writer can take the write lock up front with
`execution_options(sqlite_begin="IMMEDIATE")` instead of failing to upgrade a
read lock halfway through a transaction.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from metering import deadline

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import MetaData

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def __getattr__(name: str) -> Any:
    """`TARGET_METADATA`: every package's tables on one MetaData (so foreign keys to tenants resolve), for
    Alembic autogenerate and the models-vs-migrations test. Importing the table modules is what registers
    them; done on first use, so that opening an engine (every CLI command) does not load them all."""
    if name == "TARGET_METADATA":
        try:
            import invoicing.ledger.tables
            import invoicing.platform_tables
            import invoicing.tables
        except AttributeError as exc:  # would read as "cannot import name TARGET_METADATA"
            raise ImportError(f"registering the tables failed: {exc}") from exc
        from metering.tables import metadata

        del invoicing  # imported for what importing does: registering the tables on `metadata`
        target: list[MetaData] = [metadata]
        return target
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# --- opening an existing database without writing to it ----------------------------------------------------------

_REVISION_RE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


def known_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision, the heads) of migrations/versions, read from the files' `revision =` and
    `down_revision =` lines: what Alembic's script directory says (a test holds them equal), without
    loading Alembic, which costs a command a third of a second."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in _REVISION_RE.findall(path.read_text(encoding="utf-8")):
            found = set(re.findall(r"[\"']([^\"']+)[\"']", value))
            (revisions if name == "revision" else parents).update(found)
    return frozenset(revisions), frozenset(revisions - parents)


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite URL's file (None for another database or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().resolve()


def schema_problem(engine: Engine) -> str | None:
    """Why the schema of an existing database cannot serve this Tally (None when it is at the newest
    revision), read without writing anything: a command that only reads never migrates."""
    where = sqlite_file(str(engine.url)) or engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, "alembic_version"):
            return f"the database at {where} has no Tally schema; create it with `tally migrate`"
        found = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
    revisions, heads = known_revisions()
    if found & heads:
        return None
    if found <= revisions:
        return (
            f"the database at {where} is at schema revision {', '.join(sorted(found))}, older than this Tally's "
            f"{', '.join(sorted(heads))}; upgrade it with `tally migrate`"
        )
    return (
        f"the database at {where} is at schema revision {', '.join(sorted(found))}, which this Tally does not "
        "know: it was written by a newer version of Tally"
    )
