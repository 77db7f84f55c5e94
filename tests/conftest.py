"""Shared fixtures: a database on SQLite and PostgreSQL, tenants with keys, and real gRPC servers.

Storage tests take `db_url`, parametrised over both databases. PostgreSQL comes
from TALLY_TEST_POSTGRES_URL; each test gets its own database, so tests never see
each other's rows. Migrations run once per run into a template that each test's
database is copied from. Outside CI a missing URL skips the PostgreSQL half; in CI
(CI=true) a missing or unreachable PostgreSQL fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from metering.meter import Aggregation, MeterDefinition, create_meter
from metering.tenant import create_api_key, create_tenant
from tally.db import make_engine, upgrade
from tally.server import RunningServer, start
from tally.settings import Settings

PG_ENV = "TALLY_TEST_POSTGRES_URL"


def _postgres_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            raise pytest.UsageError(f"CI is set but {PG_ENV} is not: the PostgreSQL tests must run in CI")
        return None
    return url


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[Engine | None]:
    url = _postgres_url()
    if url is None:
        yield None
        return
    engine = create_engine(url, pool_size=2)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # an unreachable server must fail loudly, never skip
        pytest.fail(f"{PG_ENV}={url} is set but PostgreSQL does not answer: {exc}")
    yield engine
    engine.dispose()


def _backends() -> list[Any]:
    return ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run; a test that needs a migrated database gets a copy
    (milliseconds) instead of running every migration again (a sixth of a second each)."""
    path = tmp_path_factory.mktemp("template") / "tally.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    with eng.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template(pg_admin_engine: Engine | None) -> Iterator[str | None]:
    """A PostgreSQL database migrated to head once per run (and per xdist worker, since a template must
    have no other connections while it is copied); each test's database is `CREATE DATABASE … TEMPLATE`
    of it, some 40 ms instead of half a second of migrations."""
    if pg_admin_engine is None:
        yield None
        return
    name = f"tally_tmpl_{_worker()}_{uuid.uuid4().hex[:8]}"
    _create_database(pg_admin_engine, name)
    eng = make_engine(_pg_database_url(name))
    upgrade(eng)
    eng.dispose()
    yield name
    _drop_database(pg_admin_engine, name)


class _PgPool:
    """Migrated PostgreSQL databases reused from test to test within a worker. Copying the template costs
    ~0.2 s and dropping the copy more (0.3–0.5 s a test under the suite's load, over half of all PostgreSQL
    tests' fixture time); emptying a database that the test left with the template's schema costs ~25 ms:
    its sessions are ended, every row is deleted (foreign-key triggers off) and its sequences restart, so
    the next test sees a database indistinguishable from a fresh copy. A database whose schema the test
    changed, or that held many rows (dead tuples would slow the next test), is dropped instead."""

    ROWS_MAX = 50_000
    APP = "tally_test_pool"
    #: The schema's shape: objects of the public schema, their options, user triggers and functions, and the
    #: migration; a test that changed any of it leaves a database that is dropped, not reused.
    SHAPE = (
        "(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'),"
        " (SELECT coalesce(sum(hashtext(c.relname::text || c.relkind::text || coalesce(array_to_string(c.reloptions,"
        " ','), ''))), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'),"
        " (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal),"
        " (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'),"
        " (SELECT string_agg(version_num, ',') FROM alembic_version)"
    )

    def __init__(self, admin: Engine, template: str) -> None:
        self.admin, self.template = admin, template
        self.free: list[str] = []
        self.engines: dict[str, Engine] = {}
        self.shape: tuple[Any, ...] | None = None
        self.reset: tuple[str, str] | None = None  # the statements that empty a database, made once

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        name = f"tally_t_{uuid.uuid4().hex[:12]}"
        _create_database(self.admin, name, self.template)
        if self.shape is None:  # a fresh copy has the template's shape (the template itself must stay unopened)
            with self._engine(name).connect() as conn:
                self.shape = self._shape(conn)
        return name

    def _engine(self, name: str) -> Engine:
        """One connection per database, kept for its resets: its role skips foreign-key triggers, and the
        sessions the test left are ended by name (every other application_name)."""
        engine = self.engines.get(name)
        if engine is None:
            engine = self.engines[name] = create_engine(
                _pg_database_url(name),
                pool_size=1,
                isolation_level="AUTOCOMMIT",
                connect_args={"application_name": self.APP, "options": "-c session_replication_role=replica"},
            )
        return engine

    def _shape(self, conn: Any) -> tuple[Any, ...]:
        return tuple(conn.exec_driver_sql(f"SELECT {self.SHAPE}").one())

    def give_back(self, name: str) -> None:
        try:
            if self._empty(name):
                self.free.append(name)
                return
        except Exception:  # whatever the test left, a fresh copy is always right
            pass
        engine = self.engines.pop(name, None)
        if engine is not None:
            engine.dispose()
        _drop_database(self.admin, name)

    def _empty(self, name: str) -> bool:
        """Three round trips on a kept connection: end the test's sessions; delete every row and read the
        shape in one statement; restart the sequences."""
        if self.reset is None:
            with self._engine(name).connect() as conn:
                tables = [r[0] for r in conn.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )]  # fmt: skip
                sequences = [r[0] for r in conn.exec_driver_sql(
                    "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
                )]  # fmt: skip
            deletes = ", ".join(f'd{k} AS (DELETE FROM "{t}" RETURNING 1)' for k, t in enumerate(tables))
            counts = " + ".join(f"(SELECT count(*) FROM d{k})" for k in range(len(tables)))
            restarts = "".join(f'ALTER SEQUENCE "{q}" RESTART;' for q in sequences)
            self.reset = (f"WITH {deletes} SELECT {counts}, {self.SHAPE}", restarts)
        delete, restart = self.reset
        with self._engine(name).connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> '{self.APP}'"
            )  # servers and engines the test left open
            deleted, *shape = conn.exec_driver_sql(delete).one()
            if tuple(shape) != self.shape:
                return False
            conn.exec_driver_sql(restart)
        return bool(deleted <= self.ROWS_MAX)

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()
        for name in self.free:
            _drop_database(self.admin, name)
        self.free.clear()


@pytest.fixture(scope="session")
def pg_pool(pg_admin_engine: Engine | None, pg_template: str | None) -> Iterator[_PgPool]:
    assert pg_admin_engine is not None and pg_template is not None
    pool = _PgPool(pg_admin_engine, pg_template)
    yield pool
    pool.close()


def _pg_database_url(name: str) -> str:
    return make_url(os.environ[PG_ENV]).set(database=name).render_as_string(hide_password=False)


def _create_database(admin: Engine, name: str, template: str | None = None) -> None:
    clause = f' TEMPLATE "{template}" STRATEGY WAL_LOG' if template else ""
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))


def _drop_database(admin: Engine, name: str) -> None:
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _wants_migrated(request: pytest.FixtureRequest) -> bool:
    """A test that takes `engine` (directly or through another fixture) gets a database at head; one that
    only takes `db_url` gets an empty one, as migration and CLI tests expect."""
    return "engine" in request.fixturenames


@pytest.fixture(params=_backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_admin_engine: Engine | None) -> Iterator[str]:
    """A database of its own for each test: a SQLite file, or a PostgreSQL database dropped afterwards."""
    migrated = _wants_migrated(request)
    if request.param == "sqlite":
        path = tmp_path / "tally.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    if pg_admin_engine is None:
        pytest.skip(f"{PG_ENV} not set")
    if not migrated:
        name = f"tally_t_{uuid.uuid4().hex[:12]}"
        _create_database(pg_admin_engine, name)
        yield _pg_database_url(name)
        _drop_database(pg_admin_engine, name)
        return
    pool: _PgPool = request.getfixturevalue("pg_pool")
    name = pool.take()
    # A URL of its own per test, although the database is reused: whatever a process keys by URL (an
    # alert's last computation, say) starts fresh as it did with a fresh database.
    yield (
        make_url(_pg_database_url(name))
        .update_query_dict({"application_name": f"t{uuid.uuid4().hex[:12]}"})
        .render_as_string(hide_password=False)
    )
    pool.give_back(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """db_url's database, already at head (copied from the run's template)."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@dataclass(frozen=True)
class TenantKey:
    tenant_id: int
    key: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)


def make_tenant(engine: Engine, name: str = "acme") -> TenantKey:
    """A tenant with an all-scopes key and the meters most tests use."""
    tenant = create_tenant(engine, name)
    _, key = create_api_key(engine, tenant.id)
    create_meter(engine, tenant.id, MeterDefinition(code="api_calls", aggregation=Aggregation.COUNT))
    create_meter(engine, tenant.id, MeterDefinition(code="tokens", aggregation=Aggregation.SUM, value_scale=2))
    return TenantKey(tenant.id, key)


@pytest.fixture
def tenant(engine: Engine) -> TenantKey:
    return make_tenant(engine)


class ServerThread:
    """A real gRPC server on a loopback port, its asyncio loop in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-server", daemon=True)
        self._thread.start()
        self.settings = settings
        self.stopped = False
        self.running: RunningServer = self.call(start(settings))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    @property
    def http_url(self) -> str:
        assert self.running.http_port is not None, "start the server with make_server(http=True)"
        return f"http://127.0.0.1:{self.running.http_port}"

    def stop(self, grace_s: float = 2.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.call(self.running.stop(grace_s))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


@pytest.fixture
def make_server(db_url: str, engine: Engine) -> Iterator[Callable[..., ServerThread]]:
    """Start servers on db_url with optional ingest (and `api_limits=`) overrides; all stopped at teardown."""
    servers: list[ServerThread] = []

    def _make(api_limits: dict[str, Any] | None = None, http: bool = False, **ingest_limits: Any) -> ServerThread:
        base = Settings(database_url=db_url, port=0, http_port=0 if http else None)
        settings = base.model_copy(
            update={
                "ingest": base.ingest.model_copy(update=ingest_limits),
                "api": base.api.model_copy(update=api_limits or {}),
            }
        )
        server = ServerThread(settings)
        servers.append(server)
        return server

    yield _make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()


CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(tmp_path: Path) -> CliRun:
    """`run(*args)` invokes the `tally` CLI on a fresh SQLite file: (exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from tally.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()

    def _run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(main, ["--database-url", url, *args])
        return result.exit_code, result.stdout, result.stderr

    return _run
