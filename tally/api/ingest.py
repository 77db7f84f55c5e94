"""The IngestService gRPC servicer (grpc.aio): authenticate, validate, admit, commit, ack.

It lives at the edge with the other servicers; `metering` below it knows no gRPC and no generated code
(its verdicts are `metering.event.Code`s, turned into wire messages here).

Flow of one batch: shape checks (status error for the whole batch) → per-event
validation (errors by index) → admission against the shared queue budget
(back-pressure) → the committer's group commit → ack. A stream keeps at most
stream_inflight_batches_max batches, and at most stream_buffered_bytes_max bytes of
them, between "read" and "acked"; when either is reached it stops reading, and gRPC
flow control slows the producer down, so memory stays bounded however fast clients
send, and a client that never reads its acks pins one stream's budget, no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from metering.committer import Committer
from metering.errors import ResourceExhausted, Unavailable
from metering.event import Clock, EventError, PreparedBatch, check_batch_shape, prepare
from metering.limits import IngestLimits
from metering.meter import MeterCatalog
from metering.store import BatchOutcome
from metering.tenant import KeyStore, Principal
from metering.text import CONTROL_RE, any_control
from tally.errors import abort
from tally.v1 import ingest_pb2 as pb
from tally.v1 import ingest_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class AdmissionBudget:
    """Counts events admitted but not yet committed, across all streams: the queue's bound in events; and,
    with `delay`, its bound in time: while batches stand in the queue longer than `delay_max_s` (the
    committer's `queue_delay_s`), new ones are refused at once rather than queued behind them.

    Used only from the server's event loop thread, so plain integers suffice.
    """

    def __init__(
        self, events_max: int, delay: Callable[[], float] | None = None, delay_max_s: float | None = None
    ) -> None:
        self._available = events_max
        self._events_max = events_max
        self._changed = asyncio.Event()
        self._delay = delay
        self._delay_max_s = delay_max_s
        self.refused_late = 0

    @property
    def queued(self) -> int:
        return self._events_max - self._available

    async def acquire(self, events: int, wait_s: float, retry_after_ms: int) -> None:
        if self._delay is not None and self._delay_max_s is not None and self.queued:
            delay = self._delay()
            if delay > self._delay_max_s:
                self.refused_late += 1
                raise ResourceExhausted(
                    f"ingest queue delay {delay * 1000:.0f} ms is over queue_delay_ms_max="
                    f"{self._delay_max_s * 1000:.0f}; retry after {retry_after_ms} ms",
                    retry_after_ms,
                )
        events = min(events, self._events_max)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self._available < events:
            self._changed.clear()
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                raise ResourceExhausted(
                    f"ingest queue full (queue_events_max={self._events_max}) for {wait_s * 1000:.0f} ms; "
                    f"retry after {retry_after_ms} ms",
                    retry_after_ms,
                ) from None
        self._available -= events

    def release(self, events: int) -> None:
        self._available += min(events, self._events_max)
        self._changed.set()


class CommitHook(Protocol):
    """Told about every batch the servicer queues, so in-process caches can follow usage at once.

    `submitted` runs just before a batch is queued, `committed` once it is settled: with its outcome
    after COMMIT (and before the client is acked), or with None when the commit failed. Both run on
    the server's event loop, so they must be quick and must not block.
    """

    def submitted(self, batch: PreparedBatch) -> None: ...

    def committed(self, batch: PreparedBatch, outcome: BatchOutcome | None) -> None: ...


@dataclass(slots=True)
class Submitted:
    batch: PreparedBatch
    outcome: asyncio.Future[BatchOutcome]
    size: int = 0  # bytes of the request message, held against the stream's buffer budget


class _Buffered:
    """Bytes of one stream's batches read but not yet acked; reading waits while they exceed the budget.

    At least one batch always fits (a batch may be as large as message_bytes_max), so a stream
    holds at most bytes_max + one message. Used only on the server's event loop."""

    def __init__(self, bytes_max: int) -> None:
        self._max = bytes_max
        self._held = 0
        self._freed = asyncio.Event()

    def take(self, size: int) -> None:
        self._held += size

    def release(self, size: int) -> None:
        self._held -= size
        self._freed.set()

    async def room(self) -> None:
        while self._held >= self._max:
            self._freed.clear()
            await self._freed.wait()


def event_error_pb(error: EventError) -> pb.EventError:
    return pb.EventError(index=error.index, field=error.field, code=int(error.code), reason=error.reason)  # type: ignore[arg-type]


def build_ack(batch: PreparedBatch, outcome: BatchOutcome, sequence: int) -> pb.IngestAck:
    if outcome.refused or (batch.atomic and batch.errors):
        culprits = sorted([*batch.errors, *outcome.errors], key=lambda e: e.index)
        return pb.IngestAck(
            batch_id=batch.batch_id,
            sequence=sequence,
            rejected=batch.size,
            errors=[event_error_pb(e) for e in culprits],
            refused=True,
        )
    errors = batch.errors
    if outcome.errors:
        errors = sorted([*errors, *outcome.errors], key=lambda e: e.index)
    return pb.IngestAck(
        batch_id=batch.batch_id,
        sequence=sequence,
        accepted=outcome.accepted,
        duplicate=outcome.duplicate,
        rejected=len(errors),
        errors=[event_error_pb(e) for e in errors],
    )


class IngestServicer(pb_grpc.IngestServiceServicer):
    def __init__(
        self,
        keys: KeyStore,
        catalog: MeterCatalog,
        committer: Committer,
        limits: IngestLimits,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self._keys = keys
        self._catalog = catalog
        self._committer = committer
        self._limits = limits
        self._clock_us = clock_us
        self._budget: AdmissionBudget | None = None
        self._draining = asyncio.Event()
        self.events_acked = 0
        self.batches_read = 0  # from every stream, for operators and tests
        self.streams_cut = 0  # streams ended by a drain with batches unread (their clients resend them)
        #: Optional post-commit hook (the entitlement cache); None costs nothing per batch.
        self.commit_hook: CommitHook | None = None

    def _admission(self) -> AdmissionBudget:
        # Created lazily so it binds to the server's running event loop.
        if self._budget is None:
            committer = self._committer
            self._budget = AdmissionBudget(
                self._limits.queue_events_max,
                committer.queue_delay,
                self._limits.queue_delay_ms_max / 1000,
            )
        return self._budget

    def drain(self) -> None:
        """Stop reading new batches; batches already read are still committed and acked."""
        self._draining.set()

    def _principal(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        principal = self._keys.authenticate_call(context.invocation_metadata())
        principal.require("ingest")
        return principal

    async def _submit(self, principal: Principal, batch: pb.EventBatch) -> Submitted:
        """Validate and queue one batch; the returned future resolves after COMMIT."""
        check_batch_shape(batch, self._limits)
        meters = set(batch.columns.meters) if batch.HasField("columns") else {e.meter for e in batch.events}
        if any_control(meters):  # never let such a code reach a query; the events are refused as unknown
            meters = {m for m in meters if not CONTROL_RE.search(m)}
        specs = self._catalog.specs(principal.tenant_id, meters)
        prepared = prepare(principal.tenant_id, batch, specs, self._limits, Clock.at(self._clock_us(), self._limits))
        loop = asyncio.get_running_loop()
        if not len(prepared) or (prepared.atomic and prepared.errors):
            done: asyncio.Future[BatchOutcome] = loop.create_future()
            done.set_result(BatchOutcome())
            return Submitted(prepared, done)
        budget = self._admission()
        n = len(prepared)
        await budget.acquire(n, self._limits.queue_wait_ms_max / 1000, self._limits.retry_after_ms)
        hook = self.commit_hook
        if hook is not None:
            hook.submitted(prepared)
        fut = asyncio.wrap_future(self._committer.submit(prepared), loop=loop)

        def _release(_: object) -> None:
            budget.release(n)

        fut.add_done_callback(_release)
        if hook is not None:
            # Registered before the ack awaits the future, so it runs first: an acked batch is in the cache.
            fut.add_done_callback(functools.partial(_settled, hook, prepared))
        return Submitted(prepared, fut)

    async def _ack(self, submitted: Submitted, sequence: int) -> pb.IngestAck:
        outcome = await submitted.outcome
        ack = build_ack(submitted.batch, outcome, sequence)
        self.events_acked += ack.accepted + ack.duplicate
        return ack

    async def IngestBatch(self, request: pb.EventBatch, context: grpc.aio.ServicerContext[Any, Any]) -> pb.IngestAck:
        try:
            if self._draining.is_set():
                raise Unavailable("server is shutting down; resend the batch")
            principal = self._principal(context)
            return await self._ack(await self._submit(principal, request), 1)
        except Exception as exc:
            await abort(context, exc, "ingest")
            raise  # unreachable: abort raises

    async def Ingest(
        self, request_iterator: AsyncIterator[pb.EventBatch], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.IngestAck]:
        try:
            principal = self._principal(context)
        except Exception as exc:
            await abort(context, exc, "ingest")
            return
        pending: asyncio.Queue[tuple[int, Submitted] | BaseException | None] = asyncio.Queue(
            self._limits.stream_inflight_batches_max
        )
        buffered = _Buffered(self._limits.stream_buffered_bytes_max)
        reader = asyncio.create_task(self._read(principal, request_iterator, pending, buffered))
        try:
            while True:
                item = await pending.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    await abort(context, item, "ingest")
                    return
                sequence, fut = item
                try:
                    ack = await self._ack(fut, sequence)
                except Exception as exc:
                    await abort(context, exc, "ingest")
                    return
                yield ack
                buffered.release(fut.size)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read(
        self,
        principal: Principal,
        requests: AsyncIterator[pb.EventBatch],
        pending: asyncio.Queue[tuple[int, Submitted] | BaseException | None],
        buffered: _Buffered,
    ) -> None:
        sequence = 0
        drained = asyncio.ensure_future(self._draining.wait())
        try:
            iterator = aiter(requests)
            while True:
                await buffered.room()
                nxt = asyncio.ensure_future(anext(iterator))
                await asyncio.wait({nxt, drained}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    nxt.cancel()
                    self.streams_cut += 1
                    await pending.put(
                        Unavailable(
                            f"server is shutting down; batches after sequence {sequence} were not read: resend them"
                        )
                    )
                    return
                try:
                    batch = nxt.result()
                except StopAsyncIteration:
                    await pending.put(None)
                    return
                sequence += 1
                self.batches_read += 1
                size = batch.ByteSize()
                buffered.take(size)
                try:
                    fut = await self._submit(principal, batch)
                except Exception as exc:
                    await pending.put(exc)
                    return
                fut.size = size
                await pending.put((sequence, fut))
        except Exception as exc:  # the transport failed while reading
            await pending.put(exc)
        finally:
            drained.cancel()


def _settled(hook: CommitHook, batch: PreparedBatch, fut: asyncio.Future[BatchOutcome]) -> None:
    outcome = None if fut.cancelled() or fut.exception() is not None else fut.result()
    try:
        hook.committed(batch, outcome)
    except Exception:  # a cache bug must never fail an ingest that is already committed
        log.exception("commit hook failed")
