"""Shared fixtures: a database on SQLite and PostgreSQL, tenants with keys, and real gRPC servers.

Storage tests take `db_url`, parametrised over both databases. PostgreSQL comes
from TALLY_TEST_POSTGRES_URL; each test gets its own schema, so tests never see
each other's rows. Outside CI a missing URL skips the PostgreSQL half; in CI
(CI=true) a missing or unreachable PostgreSQL fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

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


@pytest.fixture(params=_backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_admin_engine: Engine | None) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tally.db'}"
        return
    if pg_admin_engine is None:
        pytest.skip(f"{PG_ENV} not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pg_admin_engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = os.environ[PG_ENV]
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with pg_admin_engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
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
