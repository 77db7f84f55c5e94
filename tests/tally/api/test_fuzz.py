"""A fuzz of EVERY RPC of IngestService and BillingService over a real socket, on SQLite and PostgreSQL.

Requests are generated from the message descriptors (tests/tally/api/fuzz_strategies.py), in three passes
per RPC against a real server per database (the RPCs split in `PARTS` parts, each with its own server):

1. a deterministic sweep: the RPC's valid base request (the table of tests/tally/api/test_access.py, aimed at
   tenant A's seeded meter, customer, plan, subscription, invoice, wallet, endpoint and alert) with exactly one
   leaf field replaced by each hostile value of its kind, so a failure names its field;
2. hypothesis (derandomized, so CI is repeatable): any mix of fields kept from the base or drawn hostile;
3. request bodies that are not protobuf, sent with a generic channel call as raw bytes.

Every call is made with tenant A's all-scopes key, so scope checks do not short-circuit it. For every request:
- the status is never INTERNAL, UNKNOWN or DATA_LOSS;
- a refused request (any status but OK; for ingest, also an ack that accepted nothing) stored nothing: the row
  count of every table of the schema (tenant B's rows left out) is the same before and after it.
Meanwhile tenant B streams valid batches with its own ingest key; every batch must be acked in full and every
event stored exactly once at the end. The server must answer health checks after each RPC's fuzz and at the end.

The background workers that write on their own (webhook dispatcher, alert evaluator, subscription scheduler,
points accrual, the rollup fold) are stopped or parked for the run, so a change in row counts is the request's own
doing.

Failures are collected rather than raised one by one, deduplicated by (RPC, status, server exception and where
it was raised), and asserted together at the end with the input, the field and the server's traceback.
Run: pytest tests/tally/api/test_fuzz.py (TALLY_TEST_POSTGRES_URL for the PostgreSQL half; -s prints the
report even when it passes; TALLY_FUZZ_REPORT=FILE appends it to FILE; TALLY_FUZZ_EXAMPLES=N sets the
hypothesis examples per RPC).
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, inspect, text

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import finalize_invoice, list_invoices, run_cycle
from invoicing.events import create_endpoint
from invoicing.insight import create_alert
from invoicing.ledger.ledger import Ledger
from invoicing.subscriptions import create_subscription, pause_subscription
from metering.tenant import create_api_key
from tally.settings import Settings
from tally.v1 import billing_pb2, ingest_pb2
from tally.v1 import billing_pb2_grpc as billing_grpc
from tests.conftest import ServerThread, TenantKey, make_tenant
from tests.tally.api import fuzz_strategies as fz
from tests.tally.api.conftest import Api
from tests.tally.api.test_access import AS_OF, CASES, T0, World, build_world

FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
#: Examples per RPC in the hypothesis pass (the sweep is exhaustive over its pools, whatever this says).
EXAMPLES = int(os.environ.get("TALLY_FUZZ_EXAMPLES", "12"))
UNARY_TIMEOUT_S = 5.0
WATCH_TIMEOUT_S = 0.12
STREAM_TIMEOUT_S = 10.0


# --- the RPCs, from the service descriptors -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def label(self) -> str:
        return f"{self.service.rsplit('.', 1)[-1]}.{self.name}"

    @property
    def request_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    @property
    def client_streaming(self) -> bool:
        return bool(self.method.client_streaming)

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)


#: Fuzzed last: each subscription they create (one may start in 1970) adds periods that every later invoicing
#: RPC then has to rate, which would spend the time budget on RunInvoiceCycle and GetUpcomingInvoice.
LAST = ("CreateSubscription",)
RPCS: list[Rpc] = sorted(
    (
        Rpc(service.full_name, m.name, m)
        for module, name in ((ingest_pb2, "IngestService"), (billing_pb2, "BillingService"))
        for service in [module.DESCRIPTOR.services_by_name[name]]
        for m in service.methods
    ),
    key=lambda r: r.name in LAST,
)
#: Raw bodies every RPC gets (the first of fz.RAW_BODIES); these RPCs get them all.
RAW_CORE = 9
RAW_ALL = {"Ingest", "IngestBatch", "WatchEvents", "CreatePlan", "ListCustomers", "CreateTransfers", "QueryUsage"}

#: Methods whose success uses up the seeded object they name; the world hands out a fresh one afterwards.
CONSUMES = {
    "PauseSubscription": "active_sub",
    "CancelSubscription": "active_sub",
    "ResumeSubscription": "paused_sub",
    "FinalizeInvoice": "draft_invoice",
    "VoidInvoice": "draft_invoice",
    "MarkInvoicePaid": "finalized_invoice",
    "MarkInvoiceUncollectible": "finalized_invoice",
    "DeleteAlert": "alert",
    "DisableWebhookEndpoint": "endpoint",
}
#: Which pool each method's World draws its subscription / invoice id from.
SUB_POOL = {"ResumeSubscription": "paused_sub"}
INVOICE_POOL = {"MarkInvoicePaid": "finalized_invoice", "CreateCreditNote": "finalized_invoice",
                "VoidInvoice": "draft_invoice", "FinalizeInvoice": "draft_invoice",
                "RecordPayment": "finalized_invoice", "ListPayments": "finalized_invoice",
                "MarkInvoiceUncollectible": "finalized_invoice", "OpenDispute": "finalized_invoice"}  # fmt: skip


# --- the seeded world of tenant A ------------------------------------------------------------------------------------


class Seed:
    """Tenant A's objects, with spares of those an RPC uses up (a paused subscription, a draft invoice, ...)."""

    SPARES = 6

    def __init__(self, api: Api) -> None:
        self.api = api
        engine, tid = api.engine, api.tenant.tenant_id
        self.world: World = build_world(api)  # customer cus_a, plan pro, subscription, invoice, wallet, ...
        self.pools: dict[str, list[int]] = {
            "active_sub": [],
            "paused_sub": [],
            "draft_invoice": [],
            "finalized_invoice": [],
            "alert": [self.world.alert_id],
            "endpoint": [self.world.endpoint_id],
        }
        spares = [f"cus_s{i}" for i in range(2 * self.SPARES)]
        for i, cus in enumerate(spares):
            create_customer(engine, tid, CustomerDefinition(external_id=cus, name=cus), T0)
            sub = create_subscription(engine, tid, cus, "pro", T0)
            if i % 2:
                pause_subscription(engine, tid, sub.id, T0 + timedelta(days=1))
                self.pools["paused_sub"].append(sub.id)
            else:
                self.pools["active_sub"].append(sub.id)
        run_cycle(engine, tid, AS_OF)
        drafts = [
            inv.id
            for inv in list_invoices(engine, tid, status="draft", limit=1000)
            if inv.id is not None and inv.id != self.world.invoice_id
        ]
        half = len(drafts) // 2
        for inv in drafts[:half]:
            finalize_invoice(engine, tid, inv, AS_OF)
        self.pools["finalized_invoice"] = drafts[:half]
        self.pools["draft_invoice"] = drafts[half:]
        self.pools["active_sub"].insert(0, self.world.subscription_id)
        self.pools["draft_invoice"].insert(0, self.world.invoice_id)
        ledger = Ledger(engine, tid)
        ledger.define_points_unit("pts", 2)  # so ConvertCredits and points top-ups get past NOT_FOUND
        ledger.set_rate("USD", "pts", "10", T0)
        ledger.top_up("top_pts", "cus_a", ledger.amount("5", "pts"), "pts")
        for i in range(self.SPARES):
            self.pools["alert"].append(create_alert(engine, tid, "cus_a", "usage", "100", T0, meter="api_calls").id)
            self.pools["endpoint"].append(create_endpoint(engine, tid, f"http://127.0.0.1:9/spare{i}", [], 0, T0).id)

    def head(self, pool: str) -> int:
        return self.pools[pool][0]

    def used(self, pool: str) -> None:
        if len(self.pools[pool]) > 1:
            self.pools[pool].pop(0)

    def for_method(self, name: str) -> World:
        w = self.world
        return World(
            customer=w.customer,
            subscription_id=self.head(SUB_POOL.get(name, "active_sub")),
            invoice_id=self.head(INVOICE_POOL.get(name, "draft_invoice")),
            wallet_id=w.wallet_id,
            endpoint_id=self.head("endpoint"),
            alert_id=self.head("alert"),
        )

    def known_ints(self) -> dict[str, list[int]]:
        """Ids worth trying in integer fields, by field name."""
        subs = self.pools["active_sub"][:1] + self.pools["paused_sub"][:1]
        invoices = self.pools["draft_invoice"][:1] + self.pools["finalized_invoice"][:1]
        ids = [*subs, *invoices, self.head("alert"), self.head("endpoint")]
        return {
            "id": ids,
            "invoice_id": invoices,
            "account_id": [self.world.wallet_id],
            "debit_account_id": [self.world.wallet_id, self.world.wallet_id + 1],
            "credit_account_id": [self.world.wallet_id, self.world.wallet_id + 1],
            "endpoint_id": [self.head("endpoint")],
            "plan_version": [1, 2],
            "version": [1, 2],
            "after_sequence": [1, 5],
            "to_sequence": [1, 5],
        }


BASES: dict[str, Callable[[World], Message]] = {name: make for name, make, _ in CASES}
# Seed defines the points unit "pts" (units are case-sensitive; test_access only needs any unknown unit).
BASES["ConvertCredits"] = lambda w: billing_pb2.ConvertCreditsRequest(
    conversion_id="cv_x", customer=w.customer, amount="1", from_unit="USD", to_unit="pts"
)


def ingest_base(columns: bool) -> ingest_pb2.EventBatch:
    """One valid event for tenant A (row form, or column form); "EVT" ids are made unique when sent."""
    now_us = time.time_ns() // 1000
    if columns:
        return ingest_pb2.EventBatch(
            batch_id="fz",
            columns=ingest_pb2.EventColumns(
                event_ids=["EVT"], customers=["cus_a"], meters=["tokens"], timestamps_unix_us=[now_us],
                value_units=[125], value_scale=2,
                properties=[ingest_pb2.PropertyColumn(key="region", values=["eu"])],
            ),
        )  # fmt: skip
    event = ingest_pb2.Event(
        event_id="EVT", customer="cus_a", meter="tokens", value="1.25", properties={"region": "eu"}
    )
    event.timestamp.FromMicroseconds(now_us)
    return ingest_pb2.EventBatch(batch_id="fz", events=[event])


# --- what the server logs ---------------------------------------------------------------------------------------------


@dataclass
class LoggedError:
    thread: str
    logger: str
    message: str
    exc_type: str
    where: str  # innermost frame in the project's code
    trace: str


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _type_name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")


def _project_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [
        f for f in traceback.extract_tb(exc.__traceback__)
        if f.filename.startswith(ROOT) and "/.venv/" not in f.filename and "/site-packages/" not in f.filename
    ]  # fmt: skip


def _summary(exc: BaseException) -> str:
    """The exception chain, innermost cause first, each with its message and the project's frames (not the
    library's): what a fixer needs, without SQLAlchemy's twenty frames."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 5:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    lines = []
    for e in reversed(chain):
        message = " ".join(str(e).split())
        lines.append(f"{_type_name(e)}: {message[:400]}")
        for f in _project_frames(e)[-8:]:
            lines.append(f"    at {os.path.relpath(f.filename, ROOT)}:{f.lineno} in {f.name}: {(f.line or '').strip()}")
    return "\n".join(lines)


class ErrorLog(logging.Handler):
    """Every ERROR record while the fuzz runs (the server logs internal errors with their traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[LoggedError] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        exc_type, where, trace = "", "", ""
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            exc_type = _type_name(exc)
            frames = _project_frames(exc)
            if frames:
                f = frames[-1]
                where = f"{os.path.relpath(f.filename, ROOT)}:{f.lineno} in {f.name}"
            trace = _summary(exc)
        entry = LoggedError(record.threadName or "", record.name, record.getMessage(), exc_type, where, trace)
        with self._lock:
            self.records.append(entry)

    def mark(self) -> int:
        with self._lock:
            return len(self.records)

    def since(self, mark: int) -> list[LoggedError]:
        with self._lock:
            return self.records[mark:]


# --- failures ------------------------------------------------------------------------------------------------------


def short(value: Any, limit: int = 70) -> str:
    """A readable repr of a (possibly 10k-character) hostile value."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"Timestamp(seconds={value[0]}, nanos={value[1]})"
    if isinstance(value, bytes):
        return repr(value) if len(value) <= limit else f"{value[:24]!r}... ({len(value)} bytes)"
    if not isinstance(value, str):
        return repr(value)
    return _short_text(value, limit)


@functools.lru_cache(maxsize=4096)
def _short_text(value: str, limit: int) -> str:
    """`short` of a string, kept: the sweep names every request by its value, and the same 10k-character values
    recur in every field of their kind (scanning them each time cost seconds per run)."""
    decoded = ""
    if value and all(c.isalnum() or c in "-_" for c in value) and len(value) >= 4:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            if raw.isascii() or raw.startswith(b"\xff"):
                decoded = f"base64 of {short(raw.decode('latin-1'), 50)}"
        except (ValueError, binascii.Error):
            pass
    if len(value) <= limit:
        text_ = repr(value)
    else:
        runs = [(ch, len(list(grp))) for ch, grp in itertools.groupby(value)]
        if len(runs) <= 4:
            text_ = " + ".join(f"{ch!r}*{n}" if n > 1 else repr(ch) for ch, n in runs)
        else:
            text_ = f"{value[:40]!r}... ({len(value)} chars)"
    return f"{text_} ({decoded})" if decoded and ("base64" not in text_) and not decoded.endswith(text_) else text_


def describe(msg: Message, base: Message | None, limit: int = 6) -> str:
    """The fields of `msg` that differ from `base`, each with a short value."""
    if base is None:
        return short(msg.SerializeToString())
    out = []
    for f in msg.DESCRIPTOR.fields:
        mine, theirs = getattr(msg, f.name), getattr(base, f.name)
        if mine == theirs:
            continue
        if f.message_type is not None and not f.is_repeated and f.message_type.full_name != fz.TIMESTAMP:
            inner = describe(mine, theirs if base.HasField(f.name) else type(mine)(), limit)
            out.append(f"{f.name}.{{{inner}}}" if msg.HasField(f.name) else f"{f.name}=<unset>")
        elif f.message_type is not None and f.message_type.full_name == fz.TIMESTAMP:
            out.append(f"{f.name}={short((mine.seconds, mine.nanos))}" if msg.HasField(f.name) else f"{f.name}=<unset>")
        elif f.is_repeated:
            items = list(mine.items()) if hasattr(mine, "items") else list(mine)
            shown = ", ".join(short(x, 40) for x in items[:3])
            out.append(f"{f.name}=[{shown}{', ...' if len(items) > 3 else ''}] ({len(items)} items)")
        else:
            out.append(f"{f.name}={short(mine)}")
    if len(out) > limit:
        out = [*out[:limit], f"... {len(out) - limit} more"]
    return ", ".join(out) or "(same as the base request)"


@dataclass
class Failure:
    kind: str  # "status", "stored", "tenant B", "health"
    rpc: str
    code: str
    details: str
    server_error: LoggedError | None
    inputs: list[str] = field(default_factory=list)
    count: int = 0
    extra: str = ""

    def render(self) -> str:
        lines = [f"[{self.kind}] {self.rpc} -> {self.code}  ({self.count} request(s))"]
        lines.append(f"    details: {self.details[:300]}")
        if self.extra:
            lines.append(f"    {self.extra}")
        for inp in self.inputs[:8]:
            lines.append(f"    input: {inp}")
        if len(self.inputs) > 8:
            lines.append(f"    ... and {len(self.inputs) - 8} more inputs")
        if self.server_error is not None:
            e = self.server_error
            lines.append(f"    server log [{e.logger}, thread {e.thread}]: {e.message}: {e.exc_type} at {e.where}")
            lines.extend(f"      | {ln}" for ln in e.trace.splitlines())
        return "\n".join(lines)


# --- tenant B's good traffic --------------------------------------------------------------------------------------


class TenantBTraffic:
    """Streams valid batches for tenant B on its own ingest key for as long as the fuzz runs."""

    def __init__(self, target: str, key: str, batch_events: int = 10, pause_s: float = 0.04) -> None:
        self.target, self.key = target, key
        self.batch_events, self.pause_s = batch_events, pause_s
        self.stop_flag = threading.Event()
        self.sent: dict[str, int] = {}  # batch id -> events, in send order
        self.acked: dict[str, ingest_pb2.IngestAck] = {}
        self.problems: list[str] = []
        self._unacked: list[ingest_pb2.EventBatch] = []
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self.thread = threading.Thread(target=self._run, name="tenant-b-traffic", daemon=True)
        self.summary = ""

    def start(self) -> None:
        self.thread.start()

    def _new_batch(self) -> ingest_pb2.EventBatch:
        n = next(self._counter)
        now_us = time.time_ns() // 1000
        batch = ingest_pb2.EventBatch(
            batch_id=f"b{n}",
            columns=ingest_pb2.EventColumns(
                event_ids=[f"b-{n}-{i}" for i in range(self.batch_events)],
                customers=["cus_b"] * self.batch_events,
                meters=["api_calls"] * self.batch_events,
                timestamps_unix_us=[now_us] * self.batch_events,
            ),
        )
        with self._lock:
            self.sent[batch.batch_id] = self.batch_events
        return batch

    def _batches(self, resend: list[ingest_pb2.EventBatch]) -> Iterator[ingest_pb2.EventBatch]:
        for batch in resend:
            with self._lock:
                self._unacked.append(batch)
            yield batch
        while not self.stop_flag.is_set():
            batch = self._new_batch()
            with self._lock:
                self._unacked.append(batch)
            yield batch
            self.stop_flag.wait(self.pause_s)

    def _run(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            call = channel.stream_stream(
                "/tally.v1.IngestService/Ingest",
                request_serializer=ingest_pb2.EventBatch.SerializeToString,
                response_deserializer=ingest_pb2.IngestAck.FromString,
            )
            resend: list[ingest_pb2.EventBatch] = []
            for _attempt in range(20):
                try:
                    for ack in call(self._batches(resend), metadata=_auth(self.key), timeout=600):
                        self._on_ack(ack)
                    with self._lock:
                        if not self._unacked:
                            return
                except grpc.RpcError as exc:
                    self.problems.append(f"tenant B's stream failed: {exc.code()} {exc.details()}")
                with self._lock:
                    resend, self._unacked = list(self._unacked), []
                if self.stop_flag.is_set() and not resend:
                    return

    def _on_ack(self, ack: ingest_pb2.IngestAck) -> None:
        with self._lock:
            expected = self._unacked.pop(0) if self._unacked else None
        if expected is None or ack.batch_id != expected.batch_id:
            self.problems.append(
                f"ack for {ack.batch_id!r} but the oldest unacked batch is {expected and expected.batch_id!r}"
            )
            return
        n = self.sent[ack.batch_id]
        if ack.rejected or ack.refused or ack.accepted + ack.duplicate != n:
            self.problems.append(f"batch {ack.batch_id}: {n} good events, ack {ack}".replace("\n", " "))
        self.acked[ack.batch_id] = ack

    def finish(self, engine: Engine, tenant_id: int) -> list[str]:
        self.stop_flag.set()
        self.thread.join(timeout=60)
        problems = list(self.problems)
        if self.thread.is_alive():
            problems.append("tenant B's stream did not finish within 60 s of its last batch")
        missing = [b for b in self.sent if b not in self.acked]
        if missing:
            problems.append(f"{len(missing)} of {len(self.sent)} batches never acked, e.g. {missing[:5]}")
        expected = sum(self.sent.values())
        with engine.connect() as conn:
            stored, distinct = conn.execute(
                text("SELECT count(*), count(DISTINCT event_id) FROM events WHERE tenant_id = :t"), {"t": tenant_id}
            ).one()
        if (stored, distinct) != (expected, expected):
            problems.append(f"{expected} events sent, {stored} stored ({distinct} distinct ids): not exactly once")
        self.summary = (
            f"tenant B: {len(self.sent)} batches ({expected} events) sent, {len(self.acked)} acked, {stored} stored"
        )
        if len(self.sent) < 20:
            problems.append(f"only {len(self.sent)} batches sent: the concurrent traffic did not really run")
        return problems


#: A distinct failure: (kind, RPC, status, what it depends on: the server's exception and where, or the tables).
Key = tuple[str, ...]


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


# --- the harness ------------------------------------------------------------------------------------------------------


class Harness:
    def __init__(self, db_url: str, engine: Engine) -> None:
        self.engine = engine
        self.failures: dict[Key, Failure] = {}
        self.observations: list[str] = []
        self.requests = 0
        self.timings: dict[str, float] = {}
        self.codes: dict[str, dict[str, int]] = {}
        self.log = ErrorLog()
        logging.getLogger().addHandler(self.log)

        base = Settings(database_url=db_url, port=0)
        platform = base.platform.model_copy(
            update={"webhook_interval_s": 3600.0, "alert_interval_s": 3600.0, "points_interval_s": 3600.0}
        )
        # The fold moves accepted events from `ingest_pending` into `rollups` on its own schedule, which would
        # read as rows written by whatever request ran meanwhile: off here (reads add unfolded events, so
        # every answer is the same; tests/metering/test_fold.py covers the fold itself).
        self.server = ServerThread(base.model_copy(update={"platform": platform, "fold_enabled": False}))
        try:
            self._setup(engine)
        except BaseException:
            self.server.stop()
            logging.getLogger().removeHandler(self.log)
            raise

    def _setup(self, engine: Engine) -> None:
        billing = self.server.running.billing
        billing.webhook_dispatcher.stop()  # it writes delivery rows on its own when woken; see the docstring

        self.a: TenantKey = make_tenant(engine, "acme")
        self.b: TenantKey = make_tenant(engine, "globex")
        _, read = create_api_key(engine, self.a.tenant_id, ("read",))
        _, ingest = create_api_key(engine, self.a.tenant_id, ("ingest",))
        _, self.b_ingest = create_api_key(engine, self.b.tenant_id, ("ingest",))
        self.channel = grpc.insecure_channel(
            self.server.target,
            options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
        )
        stub = billing_grpc.BillingServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.api = Api(engine, self.server, self.channel, stub, self.a, read, ingest, self.b)
        self.seed = Seed(self.api)
        self.metadata = _auth(self.a.key)
        self.ids = itertools.count()

        insp = inspect(engine)
        parts = []
        for table in sorted(insp.get_table_names()):
            cols = {c["name"] for c in insp.get_columns(table)}
            # Tenant B's rows are left out: its traffic runs concurrently. Only tenants A and B exist, so this is
            # every row a request of A's key could write (written as "= A", which the tenant indexes serve).
            where = f" WHERE tenant_id = {int(self.a.tenant_id)}" if "tenant_id" in cols else ""
            parts.append(f"SELECT '{table}' AS t, count(*) AS n FROM \"{table}\"{where}")
        self._snapshot_sql = text(" UNION ALL ".join(parts))
        self._last: dict[str, int] | None = None
        self._conn: Connection | None = None
        self.raw_codes: dict[str, dict[str, int]] = {}

        self.traffic = TenantBTraffic(self.server.target, self.b_ingest)
        self.traffic.start()

    # --- snapshots ---
    def snapshot(self) -> dict[str, int]:
        started = time.monotonic()
        if self._conn is None:
            # Autocommit: the one statement is its own transaction (one consistent snapshot of every table), and
            # none stays open after it (no SQLite WAL snapshot, no idle PostgreSQL transaction) without the
            # BEGIN and ROLLBACK round trips, which cost PostgreSQL's snapshot four times the query.
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        counts = {t: n for t, n in self._conn.execute(self._snapshot_sql)}
        self.timings["snapshot"] = self.timings.get("snapshot", 0.0) + time.monotonic() - started
        return counts

    def settle(self) -> None:
        """Wait until the counts stop moving (after a call whose work may still run server-side)."""
        last = self.snapshot()
        for _ in range(20):
            time.sleep(0.25)
            now = self.snapshot()
            if now == last:
                break
            last = now
        self._last = last

    # --- sending ---
    def _callable(self, rpc: Rpc, raw: bool) -> Any:
        ser = None if raw else rpc.request_type.SerializeToString
        de = None if raw else rpc.response_type.FromString
        if rpc.client_streaming:
            return self.channel.stream_stream(rpc.path, request_serializer=ser, response_deserializer=de)
        if rpc.server_streaming:
            return self.channel.unary_stream(rpc.path, request_serializer=ser, response_deserializer=de)
        return self.channel.unary_unary(rpc.path, request_serializer=ser, response_deserializer=de)

    def _uniquify(self, batch: Message) -> Message:
        if not isinstance(batch, ingest_pb2.EventBatch):
            return batch
        out = ingest_pb2.EventBatch()
        out.CopyFrom(batch)
        for ev in out.events:
            if ev.event_id == "EVT":
                ev.event_id = f"fz-{next(self.ids)}"
        for i, eid in enumerate(out.columns.event_ids):
            if eid == "EVT":
                out.columns.event_ids[i] = f"fz-{next(self.ids)}"
        return out

    def _invoke(self, rpc: Rpc, request: Any, raw: bool) -> tuple[grpc.StatusCode, str, list[Any]]:
        call = self._callable(rpc, raw)
        responses: list[Any] = []
        try:
            if rpc.client_streaming:
                batches = request if isinstance(request, list) else [request]
                for r in call(iter(batches), metadata=self.metadata, timeout=STREAM_TIMEOUT_S):
                    responses.append(r)
            elif rpc.server_streaming:
                for r in call(request, metadata=self.metadata, timeout=WATCH_TIMEOUT_S):
                    responses.append(r)
            else:
                responses.append(call(request, metadata=self.metadata, timeout=UNARY_TIMEOUT_S))
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", responses
        return grpc.StatusCode.OK, "", responses

    def send(self, rpc: Rpc, request: Any, where: str, raw: bool = False) -> tuple[Key, ...]:
        """One request with every check; returns the failure keys it produced (empty when clean)."""
        if not raw:
            request = [self._uniquify(r) for r in request] if isinstance(request, list) else self._uniquify(request)
        before = self._last if self._last is not None else self.snapshot()
        mark = self.log.mark()
        started = time.monotonic()
        code, details, responses = self._invoke(rpc, request, raw)
        elapsed = time.monotonic() - started
        phase = "raw" if raw else "call"
        self.timings[phase] = self.timings.get(phase, 0.0) + elapsed
        self.timings[rpc.label] = self.timings.get(rpc.label, 0.0) + elapsed
        self.requests += 1
        per = self.codes.setdefault(rpc.label, {})
        per[code.name] = per.get(code.name, 0) + 1
        if raw:
            per = self.raw_codes.setdefault(where.removeprefix("raw body: "), {})
            per[code.name] = per.get(code.name, 0) + 1
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and not rpc.server_streaming:
            self.settle()  # the server may still be finishing; its work must not be charged to the next request
            after = self._last or self.snapshot()
            delta = {t: after[t] - before[t] for t in after if after[t] != before.get(t)}
            self.observations.append(
                f"{rpc.label}: DEADLINE_EXCEEDED after {elapsed:.1f} s (rows added meanwhile: {delta}) for {where}"
            )
        else:
            after = self.snapshot()
        self._last = after
        errors = self.log.since(mark)
        if code in FORBIDDEN and not any(e.exc_type for e in errors):
            for _ in range(20):  # the record is written before the status is sent; allow for a slow handler
                time.sleep(0.01)
                errors = self.log.since(mark)
                if any(e.exc_type for e in errors):
                    break
        keys: list[Key] = []
        server_error = next((e for e in errors if e.exc_type), errors[0] if errors else None)
        if code in FORBIDDEN:
            sig: tuple[str, ...] = (server_error.exc_type, server_error.where) if server_error else ("", details[:80])
            keys.append(self._fail("status", rpc, code.name, details, server_error, where, sig))
        elif errors:
            self.observations.append(
                f"{rpc.label} -> {code.name} but the server logged {errors[0].message}: {errors[0].exc_type} "
                f"at {errors[0].where} (input {where})"
            )
        if rpc.client_streaming or rpc.name == "IngestBatch":  # refused unless an ack accepted something
            refused = not any(getattr(r, "accepted", 0) for r in responses)
        else:
            # Not a refusal: the call ran out of time (a long job such as RunInvoiceCycle commits as it goes and
            # is safe to re-run); it is listed under observations with what it stored.
            refused = code not in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED)
        if refused and after != before:
            delta = {t: after[t] - before[t] for t in after if after[t] != before.get(t)}
            sig = (code.name, *sorted(delta))
            keys.append(
                self._fail("stored", rpc, code.name, details, server_error, where, sig, extra=f"rows added: {delta}")
            )
        if code == grpc.StatusCode.OK and rpc.name in CONSUMES:
            self.seed.used(CONSUMES[rpc.name])
        return tuple(keys)

    def _fail(self, kind: str, rpc: Rpc, code: str, details: str, server_error: LoggedError | None, where: str,
              sig: tuple[str, ...], extra: str = "") -> Key:  # fmt: skip
        key = (kind, rpc.label, code, *sig)
        failure = self.failures.get(key)
        if failure is None:
            failure = self.failures[key] = Failure(kind, rpc.label, code, details, server_error, extra=extra)
        failure.count += 1
        if len(failure.inputs) < 40 and where not in failure.inputs:
            failure.inputs.append(where)
        return key

    def check_health(self, when: str) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        for service in ("", "tally.v1.IngestService", "tally.v1.BillingService"):
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                ok = status == health_pb2.HealthCheckResponse.SERVING
                details = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as exc:
                ok, details = False, f"{exc.code()} {exc.details()}"
            if not ok:
                key = ("health", service or "(server)", when)
                self.failures.setdefault(key, Failure("health", f"Health.Check({service!r})", details, when, None))
                self.failures[key].count += 1

    # --- the three passes ---
    def base(self, rpc: Rpc) -> Message:
        if rpc.name == "IngestBatch":
            return ingest_base(columns=False)
        if rpc.name == "Ingest":
            return ingest_base(columns=True)
        return BASES[rpc.name](self.seed.for_method(rpc.name))

    def sweep(self, rpc: Rpc) -> None:
        known = self.seed.known_ints()
        self.send(rpc, self.base(rpc), "the base request (no field changed)")
        template = self.base(rpc)
        for path, value, setter in fz.leaf_setters(template.DESCRIPTOR, known):
            msg = self.base(rpc)
            try:
                setter(msg, value)
            except (ValueError, TypeError):  # protobuf itself refuses to hold it: it never reaches the wire
                continue
            self.send(rpc, msg, f"{path} = {short(value)}")

    def hypothesis(self, rpc: Rpc, examples: int) -> None:
        known = self.seed.known_ints()
        one = fz.message_strategy(rpc.method.input_type, lambda: self.base(rpc), known)
        strategy: st.SearchStrategy[Any] = st.lists(one, min_size=1, max_size=3) if rpc.client_streaming else one
        found: list[tuple[Any, tuple[Key, ...]]] = []

        @settings(
            max_examples=examples, deadline=None, derandomize=True, database=None,
            phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(strategy)
        def run(request: Any) -> None:
            where = self._where(rpc, request)
            new = [k for k in self.send(rpc, request, where) if self.failures[k].count == 1]
            if new:
                found.append((request, tuple(new)))

        run()
        for request, keys in found:  # name the fields that matter: put the others back to the base, one by one
            if isinstance(request, list):
                continue
            self._minimize(rpc, request, keys)

    def _where(self, rpc: Rpc, request: Any) -> str:
        if isinstance(request, list):
            return "hypothesis stream of " + "; ".join(f"[{describe(r, self.base(rpc))}]" for r in request)
        return "hypothesis: " + describe(request, self.base(rpc))

    def _minimize(self, rpc: Rpc, request: Message, keys: tuple[Key, ...]) -> None:
        current = type(request)()
        current.CopyFrom(request)
        for f in request.DESCRIPTOR.fields:
            base = self.base(rpc)
            if getattr(current, f.name) == getattr(base, f.name):
                continue
            trial = type(request)()
            trial.CopyFrom(current)
            trial.ClearField(f.name)
            if f.is_repeated or f.message_type is None or base.HasField(f.name):
                getattr(trial, f.name).MergeFrom(getattr(base, f.name)) if f.message_type is not None or f.is_repeated \
                    else setattr(trial, f.name, getattr(base, f.name))  # fmt: skip
            got = self.send(rpc, trial, "minimizing: " + describe(trial, base))
            if any(k in keys for k in got):
                current = trial
        for key in keys:
            self.failures[key].inputs.append("minimal: " + describe(current, self.base(rpc)))

    def raw(self, rpc: Rpc) -> None:
        bodies = fz.RAW_BODIES if rpc.name in RAW_ALL else fz.RAW_BODIES[:RAW_CORE]
        for label, body in bodies:
            self.send(rpc, body, f"raw body: {label}", raw=True)

    def close(self) -> list[str]:
        problems = self.traffic.finish(self.engine, self.b.tenant_id)
        if self._conn is not None:
            self._conn.close()
        self.channel.close()
        self.server.stop()
        logging.getLogger().removeHandler(self.log)
        return problems

    def report(self) -> str:
        lines = [f"{self.requests} requests; {len(self.failures)} distinct failures"]
        lines.extend(f.render() for f in sorted(self.failures.values(), key=lambda f: (f.kind, f.rpc, f.code)))
        if self.observations:
            lines.append(f"observations (not failures), {len(self.observations)}:")
            lines.extend(f"  - {o}" for o in self.observations[:40])
        lines.append("status codes per RPC: " + json.dumps(self.codes, sort_keys=True))
        lines.append("status codes per raw body: " + json.dumps(self.raw_codes, sort_keys=True))
        lines.append(
            "seconds: " + json.dumps({k: round(v, 2) for k, v in sorted(self.timings.items(), key=lambda kv: -kv[1])})
        )
        return "\n".join(lines)


def test_the_fuzz_covers_every_rpc_of_both_services() -> None:
    names = {r.name for r in RPCS}
    assert {m for m in BASES} | {"Ingest", "IngestBatch"} == names
    assert len(RPCS) == len(billing_pb2.DESCRIPTOR.services_by_name["BillingService"].methods) + 2


def test_the_generators_reach_every_field_type() -> None:
    """No request message has an enum or a 64-bit unsigned field today; the walker still covers them (checked on
    IngestAck, a response with both), so a request that gains one is fuzzed at its bounds and unknown values."""
    by_path: dict[str, list[Any]] = {}
    for v in fz.single_field_variants(ingest_pb2.IngestAck(errors=[ingest_pb2.EventError()]), {}):
        assert ingest_pb2.IngestAck.FromString(v.message.SerializeToString()) == v.message
        by_path.setdefault(v.path, []).append(v.value)
    assert {0, 2**64 - 1} <= set(by_path["sequence"])
    assert {0, 2**32 - 1} <= set(by_path["accepted"])
    assert {99, -1, 2**31 - 1} <= set(by_path["errors[0].code"])
    assert "\x00" in by_path["batch_id"] and "x" * 10_000 in by_path["batch_id"]
    at = [v.value for v in fz.single_field_variants(billing_pb2.GetUpcomingInvoiceRequest(customer="c"), {})]
    assert (fz.YEAR_1, 0) in at and (fz.YEAR_9999_END, 999_999_999) in at
    meter = fz.single_field_variants(billing_pb2.CreateMeterRequest(meter=billing_pb2.Meter(code="m")), {})
    assert {"meter.filter{key}", "meter.filter{value}.values[0]", "meter.group_by[0]"} <= {v.path for v in meter}


#: The RPCs are fuzzed in this many parts, each against a server and world of its own, so the suite's two
#: workers share the longest test instead of one of them running it alone at the end.
PARTS = 2


@pytest.mark.parametrize("part", range(PARTS))
def test_fuzz_every_rpc(db_url: str, engine: Engine, part: int) -> None:
    harness = Harness(db_url, engine)
    started = time.monotonic()
    try:
        for rpc in RPCS[part::PARTS]:  # every RPC in exactly one part, CreateSubscription last in its part
            harness.sweep(rpc)
            harness.hypothesis(rpc, EXAMPLES)
            harness.raw(rpc)
            harness.check_health(f"after fuzzing {rpc.label}")
        harness.check_health("at the end")
    finally:
        problems = harness.close()
    for problem in problems:
        key = ("tenant B", problem[:60])
        harness.failures[key] = Failure("tenant B", "IngestService.Ingest (tenant B)", "", problem, None, count=1)
    report = harness.report() + f"\n{harness.traffic.summary}\n{time.monotonic() - started:.1f} s"
    print(report)
    if os.environ.get("TALLY_FUZZ_REPORT"):  # a file to keep the whole report (pytest truncates nothing, but logs)
        with open(os.environ["TALLY_FUZZ_REPORT"], "a", encoding="utf-8") as out:
            out.write(f"===== {db_url.split(':', 1)[0]}\n{report}\n")
    assert not harness.failures, report
