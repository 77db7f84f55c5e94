"""Crash tests: `kill -9` and SIGTERM on a real `tally serve` process while the Python client streams.

What must hold, on SQLite and PostgreSQL:
- every event the client saw acked is stored, checked after every kill, before the restart;
- nothing is stored twice and nothing is lost: at the end the stored rows are exactly the ids
  sent, and the sum of stored values is the exact expected total;
- SIGTERM drains: the process exits 0 within its grace period, the stream ends with UNAVAILABLE
  after acking what it had read, and the client resends the rest to the restarted server.
"""

from __future__ import annotations

import json
import os
import random
import select as io_select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import Engine, func, select

from metering.meter import get_meter
from metering.rollup import compute_from_events
from metering.rollup import stored as stored_rollups
from metering.tables import events, ingest_pending, rollups
from metering.usage import event_totals
from tally.sdk import BatchResult, IngestClient, IngestSummary, UsageEvent
from tests.conftest import TenantKey, make_tenant

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KILLS = 12
EVENTS = 30_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: What `tally serve` (and the invoice run's crash driver) import, at start-up or when it first migrates or opens
#: a webhook client: 2-4 s at every restart of a fresh interpreter here, paid once per module by the launcher.
PRELOAD = (
    "tally.cli", "tally.cli.server", "tally.server", "tally.db", "invoicing.documents._run",
    "alembic.command", "alembic.config", "alembic.runtime.migration", "alembic.script", "mako.template",
    "httpcore", "h11", "h2.connection", "trio", "pygments",
)  # fmt: skip

LAUNCHER = r"""
import gc, json, os, sys

for name in sys.argv[1:]:
    __import__(name)
# What the imports built is out of the collector's view, as `tally serve` puts it at start-up (gc.freeze, see
# tally/server.py): each child's first full collection then walks only its own objects.
gc.collect()
gc.freeze()
print("ready", flush=True)
child = None
while child is None:
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    cmd = json.loads(line)
    if cmd["op"] == "start":
        out = os.open(cmd["stdout"], os.O_WRONLY)  # the test holds the FIFO's read end: this returns at once
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child = cmd
            os.dup2(out, 1)
        os.close(out)
        if pid:
            print(json.dumps({"pid": pid}), flush=True)
    elif cmd["op"] == "wait":
        _, status = os.waitpid(cmd["pid"], 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)

# The child: its own stdin, stdout (the FIFO) and stderr (its log), environment and argv, then the program as
# `python -c` would run it, ending through the interpreter's normal exit (threads joined, atexit run).
err = os.open(child["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.dup2(err, 2)
os.close(err)
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
os.environ.update(child["env"])
sys.argv = child["argv"]
del json, cmd, line
exec(compile(child["code"], "<launched>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
"""


class Launcher:
    """A Python process that has imported Tally once (`PRELOAD`) and forks a child for each program the test
    starts: the child is a real, separate process (its own pid, killed by a real SIGKILL or SIGTERM, its
    resources freed by the kernel), it only skips the import time a fresh interpreter pays at every restart
    (some 2-4 s here, most of a crash loop). The fork happens before any thread, connection or event loop
    exists: the launcher only imports. One per module (`launcher` fixture)."""

    def __init__(self, workdir: Path, preload: tuple[str, ...] = PRELOAD) -> None:
        self.workdir = workdir
        self.count = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=(workdir / "launcher.log").open("a"),
            text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert self._line(120) == "ready", (workdir / "launcher.log").read_text()

    def _line(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = io_select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            raise TimeoutError(f"the launcher did not answer within {timeout_s} s")
        return self.proc.stdout.readline().strip()

    def _ask(self, command: dict[str, Any], timeout_s: float = 60) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = self._line(timeout_s)
        if not line:
            raise RuntimeError(f"the launcher died: {(self.workdir / 'launcher.log').read_text()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def start(self, code: str, argv: list[str], stderr: Path, env: dict[str, str] | None = None) -> Child:
        """Run `code` (as `python -c code argv[1:]...`) in a new child; its stdout is the child's `stdout`."""
        self.count += 1
        fifo = self.workdir / f"child-{self.count}.out"
        os.mkfifo(fifo)
        command = {"op": "start", "code": code, "argv": argv, "stderr": str(stderr), "env": env or {},
                   "stdout": str(fifo)}  # fmt: skip
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        stdout = fifo.open()  # returns once the launcher opened the write end, which only the child keeps
        line = self._line(60)
        if not line:
            stdout.close()
            raise RuntimeError(f"the launcher died: {(self.workdir / 'launcher.log').read_text()}")
        fifo.unlink()
        return Child(self, int(json.loads(line)["pid"]), stdout)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


class Child:
    """A process the launcher forked: `Popen`'s few methods the tests use."""

    def __init__(self, launcher: Launcher, pid: int, stdout: IO[str]) -> None:
        self.launcher, self.pid, self.stdout = launcher, pid, stdout
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        """The exit code (negative: the signal), once the launcher reaped the child."""
        if self.returncode is None:
            self.returncode = int(self.launcher._ask({"op": "wait", "pid": self.pid}, timeout_s=timeout)["code"])
            self.stdout.close()
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)  # an unreaped child still exists (as a zombie once it exits)
            except ProcessLookupError:
                return -1
        return self.returncode


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    started = Launcher(tmp_path_factory.mktemp("launcher"))
    yield started
    started.close()


SERVE = "from tally.cli import run\nrun()\n"


class ServerProcess:
    """`tally serve` (the CLI, as `python -m tally.cli serve` runs it) on a fixed port, restartable after a
    kill; each start is a new process forked by the launcher."""

    def __init__(
        self, launcher: Launcher, db_url: str, port: int, log_path: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.launcher = launcher
        self.db_url = db_url
        self.port = port
        self.log_path = log_path
        self.env = dict(extra_env or {})
        self.proc: Child | None = None
        self.starts = 0

    def start(self) -> None:
        argv = ["tally", "--database-url", self.db_url, "serve", "--port", str(self.port)]
        for attempt in range(20):
            proc = self.launcher.start(SERVE, argv, self.log_path, self.env)
            line = proc.stdout.readline()
            if "tally listening on" in line:
                self.proc = proc
                self.starts += 1
                return
            proc.wait(timeout=30)  # did not come up (the port may still be held): try again
            time.sleep(0.1 * (attempt + 1))
        pytest.fail(f"tally serve did not start on port {self.port}:\n{self.log_path.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def terminate(self, timeout_s: float) -> tuple[int, float]:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        self.proc = None
        return code, time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None


class Producer:
    """Known events at a steady pace, with the acks the client reported, for checks at any moment."""

    def __init__(self, n: int, seed: int, per_ms: int = 8) -> None:
        rng = random.Random(seed)
        ts = time.time_ns() // 1000
        self.units = [rng.randint(1, 1_000_000) for _ in range(n)]
        self.events = [
            UsageEvent(f"ev-{i:06d}", f"cus-{i % 97}", "tokens", ts - i, Decimal(u).scaleb(-2))
            for i, u in enumerate(self.units)
        ]
        self.per_ms = per_ms
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.acked_events = 0
        self.rejected = 0
        self.summary: IngestSummary | None = None
        self.error: BaseException | None = None

    def stream(self) -> Iterator[UsageEvent]:
        for i, event in enumerate(self.events):
            if i % self.per_ms == 0:
                time.sleep(0.001)  # paced, so that kills land while events are flowing
            yield event

    def on_ack(self, result: BatchResult) -> None:
        rejected = {e.index - result.first_index for e in result.errors}
        with self.lock:
            self.acked.update(eid for k, eid in enumerate(result.event_ids) if k not in rejected)
            self.acked_events += result.size
            self.rejected += len(rejected)

    def acked_now(self) -> set[str]:
        with self.lock:
            return set(self.acked)

    def run(self, target: str, key: str) -> threading.Thread:
        # retries_max counts failures since the last ack: the kill loop can take the server down several
        # times before the client gets an ack in (a restart takes ~3 s), and the client must keep trying.
        def body() -> None:
            try:
                with IngestClient(
                    target, key, batch_events_max=500, retries_max=300, backoff_max_ms=500, ack_timeout_s=20
                ) as client:
                    self.summary = client.send(self.stream(), on_ack=self.on_ack)
            except BaseException as exc:
                self.error = exc

        thread = threading.Thread(target=body, name="crash-client", daemon=True)
        thread.start()
        return thread


def stored_ids(engine: Engine, tenant: TenantKey) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(events.c.event_id).where(events.c.tenant_id == tenant.tenant_id)).scalars())


def assert_exact(engine: Engine, tenant: TenantKey, producer: Producer) -> None:
    assert producer.error is None, f"client failed: {producer.error!r}"
    summary = producer.summary
    assert summary is not None
    n = len(producer.events)
    assert (summary.accepted + summary.duplicate, summary.rejected, producer.rejected) == (n, 0, 0)
    with engine.connect() as conn:
        rows, distinct, total, scales = conn.execute(
            select(
                func.count(),
                func.count(func.distinct(events.c.event_id)),
                func.sum(events.c.value_units),
                func.count(func.distinct(events.c.value_scale)),
            ).where(events.c.tenant_id == tenant.tenant_id)
        ).one()
    assert (rows, distinct, scales) == (n, n, 1)
    assert int(total) == sum(producer.units)
    assert stored_ids(engine, tenant) == {e.event_id for e in producer.events} == producer.acked_now()


@pytest.fixture
def setup(engine: Engine) -> tuple[Engine, TenantKey]:
    """The run's migrated database (a copy of the template), with a tenant."""
    return engine, make_tenant(engine)


@pytest.mark.timeout(240)
def test_kill_9_loses_nothing_acked_and_stores_nothing_twice(
    setup: tuple[Engine, TenantKey], db_url: str, tmp_path: Path, launcher: Launcher
) -> None:
    engine, tenant = setup
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    server = ServerProcess(launcher, db_url, free_port(), tmp_path / "server.log")
    server.start()
    producer = Producer(EVENTS, seed)
    client = producer.run(f"127.0.0.1:{server.port}", tenant.key)
    kills_while_sending = 0
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 0.45))
            kills_while_sending += client.is_alive()
            server.kill9()
            acked = producer.acked_now()
            missing = acked - stored_ids(engine, tenant)
            assert not missing, f"seed {seed}: {len(missing)} acked events lost by kill -9, e.g. {sorted(missing)[:5]}"
            server.start()
        client.join(timeout=120)
        assert not client.is_alive(), f"seed {seed}: client did not finish"
    finally:
        server.stop()
    assert kills_while_sending >= KILLS // 2, f"seed {seed}: the client finished before most kills"
    summary = producer.summary
    assert summary is not None and summary.retries >= 1, producer.error
    assert_exact(engine, tenant, producer)


@pytest.mark.timeout(180)
def test_sigterm_drains_acks_then_unavailable(
    setup: tuple[Engine, TenantKey], db_url: str, tmp_path: Path, launcher: Launcher
) -> None:
    engine, tenant = setup
    grace_s = 5.0
    server = ServerProcess(
        launcher, db_url, free_port(), tmp_path / "server.log", {"TALLY_SHUTDOWN_GRACE_S": str(grace_s)}
    )
    server.start()
    producer = Producer(8_000, seed=7, per_ms=4)
    client = producer.run(f"127.0.0.1:{server.port}", tenant.key)
    try:
        deadline = time.monotonic() + 60
        while producer.acked_events < 1_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.is_alive(), "the client finished before SIGTERM: slow it down"
        code, took = server.terminate(timeout_s=grace_s + 20)
        assert code == 0, (server.log_path.read_text(), code)
        assert took < grace_s + 3, f"drain took {took:.1f} s with grace {grace_s} s"
        acked = producer.acked_now()
        assert acked and acked <= stored_ids(engine, tenant)
        server.start()
        client.join(timeout=120)
        assert not client.is_alive(), "client did not finish"
    finally:
        server.stop()
    summary = producer.summary
    assert summary is not None, producer.error
    first = summary.retry_log[0]
    assert first.startswith("UNAVAILABLE") and "shutting down" in first, summary.retry_log
    assert_exact(engine, tenant, producer)


def folded_and_pending(engine: Engine, tenant: TenantKey) -> tuple[int, int]:
    """(events the rollups hold, events the unfolded commits name) of the tenant's tokens meter."""
    with engine.connect() as conn:
        folded = conn.execute(
            select(func.coalesce(func.sum(rollups.c.events), 0)).where(
                rollups.c.tenant_id == tenant.tenant_id, rollups.c.meter == "tokens"
            )
        ).scalar_one()
        waiting = conn.execute(
            select(func.coalesce(func.sum(ingest_pending.c.events), 0)).where(
                ingest_pending.c.tenant_id == tenant.tenant_id
            )
        ).scalar_one()
    return int(folded), int(waiting)


def read_total(engine: Engine, tenant: TenantKey) -> tuple[int, Decimal]:
    """(events, value) of every customer, as usage queries answer (read through the watermark)."""
    totals = event_totals(engine, tenant.tenant_id, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    return sum(t.events for t in totals), sum((t.value_sum for t in totals), Decimal(0))


@pytest.mark.timeout(300)
def test_kill_9_between_ack_and_fold_loses_nothing_and_folds_nothing_twice(
    setup: tuple[Engine, TenantKey], db_url: str, tmp_path: Path, launcher: Launcher
) -> None:
    """The ack means durable, not folded. With folding off, every acked commit is left unfolded when the
    server is killed; then servers that fold in small steps are killed again and again mid-fold. After
    every kill: rollups + unfolded commits hold each stored event exactly once, and queries (rollups read
    through the watermark) answer the exact totals. At the end the fold has caught up and the rollups
    equal a recomputation from raw events."""
    engine, tenant = setup
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    n = 6_000
    producer = Producer(n, seed, per_ms=16)
    expected = (n, Decimal(sum(producer.units)).scaleb(-2))
    port = free_port()
    unfolded = ServerProcess(launcher, db_url, port, tmp_path / "server.log", {"TALLY_FOLD_ENABLED": "false"})
    unfolded.start()
    client = producer.run(f"127.0.0.1:{port}", tenant.key)
    try:
        client.join(timeout=120)
        assert not client.is_alive(), f"seed {seed}: client did not finish"
        unfolded.kill9()
    finally:
        unfolded.stop()
    assert_exact(engine, tenant, producer)
    assert folded_and_pending(engine, tenant) == (0, n)  # acked, stored, nothing folded
    assert read_total(engine, tenant) == expected

    folding = ServerProcess(launcher, db_url, port, tmp_path / "server.log", {"TALLY_FOLD_EVENTS_MAX": "100"})
    try:
        for _ in range(4):
            folding.start()  # its folder starts on the commits left pending
            time.sleep(rng.uniform(0.0, 0.3))
            folding.kill9()
            folded, waiting = folded_and_pending(engine, tenant)
            assert folded + waiting == n, f"seed {seed}: {folded} folded + {waiting} pending != {n}"
            assert read_total(engine, tenant) == expected, f"seed {seed}"
        folding.start()
        deadline = time.monotonic() + 60
        while folded_and_pending(engine, tenant)[1] and time.monotonic() < deadline:
            time.sleep(0.1)
        code, _ = folding.terminate(timeout_s=30)
        assert code == 0
    finally:
        folding.stop()
    assert folded_and_pending(engine, tenant) == (n, 0), f"seed {seed}"
    assert read_total(engine, tenant) == expected
    meter = get_meter(engine, tenant.tenant_id, "tokens")
    with engine.connect() as conn:
        assert stored_rollups(conn, tenant.tenant_id, "tokens", meter.spec) == compute_from_events(
            conn, tenant.tenant_id, "tokens", meter.spec
        )
