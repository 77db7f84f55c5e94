"""Python client for Tally's IngestService: exact values, batching, pipelining, resend-until-acked.

Why it is built this way:

- The server stores `(tenant, event_id)` once, forever. So the one safe reaction to a broken
  stream (server restart, kill -9, full queue) is to reconnect and resend every batch that has
  no ack, byte for byte: whatever the server had already committed comes back as `duplicate`,
  never stored twice. The client keeps each unacked batch's encoded message for exactly that.
- Several batches stay in flight on one bidirectional stream, because waiting for each commit
  (an fsync) before sending the next batch would cap throughput at one batch per fsync.
- Batches travel in the columnar form (`EventColumns`), which costs a few list comprehensions
  instead of one protobuf message per event. When a batch holds something the columnar form
  cannot say with the same meaning (a value that is not a plain decimal, present and absent
  values mixed, an empty property value), that batch goes in row form instead, so the server's
  verdict on every event is the same as if it had been sent as a row.
- Values are `Decimal`, `int` or decimal strings. A float is refused: `0.1` is not the number
  the caller wrote, and billing must not round by accident.
- Events are numbered by their position in what the caller passed in; rejections come back
  with that number, so a caller can point at its own input line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Self

import grpc
import grpc.aio

from tally.v1 import ingest_pb2 as pb
from tally.v1 import ingest_pb2_grpc as pb_grpc

__all__ = [
    "AsyncIngestClient",
    "BatchResult",
    "IngestClient",
    "IngestError",
    "IngestSummary",
    "RejectedEvent",
    "UsageEvent",
    "encode_batch",
    "ingest_batch",
]

log = logging.getLogger(__name__)

INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)
SCALE_MAX: Final = 18
# The server's default limits that decide whether the columnar form would change a verdict.
VALUE_CHARS_MAX: Final = 40
PROPERTY_KEY_BYTES_MAX: Final = 64
MESSAGE_BYTES_MAX: Final = 4 * 1024 * 1024

_POW10: Final = tuple(10**k for k in range(SCALE_MAX + 1))
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
# Plain decimal notation, exactly as the server accepts it (rating.fixedpoint.DECIMAL_RE; the SDK
# keeps its own copy so a producer never loads the server).
_DECIMAL_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

RETRYABLE: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)
_RETRY_LOG_MAX: Final = 100


# --- events ----------------------------------------------------------------------------------------


def _fixed_from_text(text: str) -> tuple[int, int] | None:
    """Plain decimal text → (units, scale), trailing zeros dropped; None when the server would refuse it."""
    if len(text) > VALUE_CHARS_MAX or _DECIMAL_RE.fullmatch(text) is None:
        return None
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    digits = whole.lstrip("+-") + frac
    units = int(digits or "0")
    return (-units if whole.startswith("-") else units), len(frac)


def _fixed_from_decimal(value: Decimal) -> tuple[int, int] | None:
    if not value.is_finite():
        return None
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent > SCALE_MAX + 20 or len(digits) > 64:
        return None  # cannot fit 64 bits at any scale: let the server say so
    units = int("".join(map(str, digits)) or "0")
    if sign:
        units = -units
    if exponent >= 0:
        return units * 10**exponent, 0
    scale = -exponent
    while scale and units % 10 == 0:
        units //= 10
        scale -= 1
    return units, scale


def _decimal_text(value: Decimal) -> str:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and abs(exponent) <= 64:
        return format(value, "f")
    return str(value)


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One usage record. Checked for types on construction, so a bad producer fails at its own line.

    `timestamp` is an aware datetime or integer microseconds since the Unix epoch (UTC); `value` is
    a Decimal, an int or a plain decimal string, or None (counts 1 on a `count` meter).
    """

    event_id: str
    customer: str
    meter: str
    timestamp: datetime | int
    value: Decimal | int | str | None = None
    properties: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Derived once here, so encoding a batch is list comprehensions only.
    _ts_us: int = field(init=False, repr=False, compare=False, hash=False)
    _fixed: tuple[int, int] | None = field(init=False, repr=False, compare=False, hash=False)
    _text: str = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("event_id", "customer", "meter"):
            got = getattr(self, name)
            if not isinstance(got, str):
                raise TypeError(f"UsageEvent.{name} must be a str, not {type(got).__name__}")
        object.__setattr__(self, "_ts_us", _timestamp_us(self.timestamp))
        fixed, text = _value_forms(self.value)
        object.__setattr__(self, "_fixed", fixed)
        object.__setattr__(self, "_text", text)
        props = self.properties
        if not isinstance(props, Mapping):
            raise TypeError(f"UsageEvent.properties must be a mapping of str to str, not {type(props).__name__}")
        copied = dict(props)
        for key, val in copied.items():
            if not isinstance(key, str) or not isinstance(val, str):
                raise TypeError(
                    f"UsageEvent.properties must map str to str; got {type(key).__name__} → {type(val).__name__}"
                )
        object.__setattr__(self, "properties", copied)


def _timestamp_us(ts: object) -> int:
    if isinstance(ts, datetime):
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError("UsageEvent.timestamp is a naive datetime; give it a timezone (e.g. tzinfo=UTC)")
        return (ts - _EPOCH) // _ONE_US
    if isinstance(ts, int) and not isinstance(ts, bool):
        if not INT64_MIN <= ts <= INT64_MAX:
            raise ValueError("UsageEvent.timestamp in microseconds does not fit 64 bits")
        return ts
    raise TypeError(
        f"UsageEvent.timestamp must be an aware datetime or int microseconds since the epoch, not {type(ts).__name__}"
    )


def _value_forms(value: object) -> tuple[tuple[int, int] | None, str]:
    if value is None:
        return None, ""
    if isinstance(value, float):
        raise TypeError(
            f"UsageEvent.value must not be a float ({value!r} is not exact); pass Decimal('{value!r}') or '{value!r}'"
        )
    if isinstance(value, bool):
        raise TypeError("UsageEvent.value must be a Decimal, int or decimal str, not bool")
    if isinstance(value, int):
        return (value, 0), str(value)
    if isinstance(value, Decimal):
        return _fixed_from_decimal(value), _decimal_text(value)
    if isinstance(value, str):
        return _fixed_from_text(value), value
    raise TypeError(f"UsageEvent.value must be a Decimal, int, decimal str or None, not {type(value).__name__}")


# --- encoding --------------------------------------------------------------------------------------


def _columns(events: Sequence[UsageEvent]) -> pb.EventColumns | None:
    """The columnar form, or None when it would not mean exactly what the row form means."""
    nones = sum(1 for e in events if e.value is None)
    units: list[int] = []
    scale = 0
    if nones and nones != len(events):
        return None  # "absent" cannot be said per event once value_units is present
    if not nones:
        fixed = [e._fixed for e in events]
        if None in fixed:
            return None
        scale = max(f[1] for f in fixed if f is not None)
        if scale > SCALE_MAX:
            return None
        units = [u * _POW10[scale - s] for u, s in fixed]  # type: ignore[misc]
        if max(units) > INT64_MAX or min(units) < INT64_MIN:
            return None
    property_columns: list[pb.PropertyColumn] = []
    if any(e.properties for e in events):
        keys: set[str] = set()
        for e in events:
            if e.properties:
                keys.update(e.properties)
                if "" in e.properties.values():
                    return None  # a row's empty value is an error; a column's empty value means "absent"
        if any(not k or len(k.encode()) > PROPERTY_KEY_BYTES_MAX for k in keys):
            return None  # a bad key refuses a whole columnar batch, but only its events in row form
        property_columns = [
            pb.PropertyColumn(key=k, values=[e.properties.get(k, "") for e in events]) for k in sorted(keys)
        ]
    return pb.EventColumns(
        event_ids=[e.event_id for e in events],
        customers=[e.customer for e in events],
        meters=[e.meter for e in events],
        timestamps_unix_us=[e._ts_us for e in events],
        value_units=units,
        value_scale=scale,
        properties=property_columns,
    )


def _row(e: UsageEvent) -> pb.Event:
    row = pb.Event(event_id=e.event_id, customer=e.customer, meter=e.meter, value=e._text, properties=e.properties)
    row.timestamp.seconds, micros = divmod(e._ts_us, 1_000_000)
    row.timestamp.nanos = micros * 1000
    return row


def encode_batch(events: Sequence[UsageEvent], batch_id: str = "", atomic: bool = False) -> pb.EventBatch:
    """One EventBatch: columnar when that is exact, rows otherwise."""
    columns = _columns(events) if events else None
    if columns is not None:
        return pb.EventBatch(batch_id=batch_id, columns=columns, atomic=atomic)
    return pb.EventBatch(batch_id=batch_id, events=[_row(e) for e in events], atomic=atomic)


# --- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    """A rejected event, by its position in the caller's input (0-based)."""

    index: int
    event_id: str
    field: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The ack of one batch, handed to `on_ack` callbacks (progress bars, audit trails)."""

    first_index: int
    size: int
    event_ids: tuple[str, ...]
    accepted: int
    duplicate: int
    rejected: int
    refused: bool
    errors: tuple[RejectedEvent, ...]


@dataclass
class IngestSummary:
    """Exact counts over every acked batch; `errors` keeps the first `errors_max` rejections."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    batches: int = 0
    retries: int = 0
    refused_batches: int = 0
    errors: list[RejectedEvent] = field(default_factory=list)
    retry_log: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def events(self) -> int:
        return self.accepted + self.duplicate + self.rejected

    @property
    def ok(self) -> bool:
        return self.rejected == 0


class IngestError(Exception):
    """The server refused the request or could not be reached within the retry budget.

    `summary` holds what was acked before the failure: those events are stored; the rest may or
    may not be, and resending them is safe.
    """

    def __init__(self, code: grpc.StatusCode, details: str, summary: IngestSummary | None = None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.summary = summary if summary is not None else IngestSummary()


def _event_ids(message: pb.EventBatch) -> tuple[str, ...]:
    if message.HasField("columns"):
        return tuple(message.columns.event_ids)
    return tuple(e.event_id for e in message.events)


def _batch_result(first_index: int, message: pb.EventBatch, ack: pb.IngestAck) -> BatchResult:
    ids = _event_ids(message)
    errors = tuple(
        RejectedEvent(
            index=first_index + e.index,
            event_id=ids[e.index] if e.index < len(ids) else "",
            field=e.field,
            code=pb.EventErrorCode.Name(e.code) if e.code in pb.EventErrorCode.values() else str(e.code),
            reason=e.reason,
        )
        for e in ack.errors
    )
    return BatchResult(first_index, len(ids), ids, ack.accepted, ack.duplicate, ack.rejected, ack.refused, errors)


def _status(exc: BaseException) -> tuple[grpc.StatusCode, str, int]:
    """(code, details, retry-after-ms or 0) of a failed call, sync or aio."""
    code = grpc.StatusCode.UNKNOWN
    details = str(exc)
    trailing: Any = ()
    if isinstance(exc, (grpc.aio.AioRpcError, grpc.Call)):
        code, details, trailing = exc.code(), exc.details() or "", exc.trailing_metadata()
    retry_after_ms = 0
    for key, value in trailing or ():
        if key == "retry-after-ms":
            with contextlib.suppress(ValueError):
                retry_after_ms = int(value if isinstance(value, str) else value.decode())
    return code, details, retry_after_ms


class _Backoff:
    """Exponential backoff with jitter, counting failures since the last progress (an ack)."""

    def __init__(self, retries_max: int, initial_s: float, max_s: float) -> None:
        self.retries_max = retries_max
        self.initial_s = initial_s
        self.max_s = max_s
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def delay(self, code: grpc.StatusCode, details: str, retry_after_ms: int, summary: IngestSummary) -> float:
        """Seconds to wait before retrying; IngestError when retrying cannot help or the budget is spent."""
        if code not in RETRYABLE or (code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details):
            raise IngestError(code, details, summary)
        self.failures += 1
        if self.failures > self.retries_max:
            raise IngestError(code, f"{details} (gave up after {self.retries_max} retries without an ack)", summary)
        base: float = min(self.max_s, self.initial_s * 2.0 ** (self.failures - 1))
        wait = base / 2 + random.uniform(0, base / 2)
        if retry_after_ms:
            wait = max(wait, retry_after_ms / 1000)
        summary.retries += 1
        summary.retry_log.append(f"{code.name}: {details}")
        del summary.retry_log[:-_RETRY_LOG_MAX]
        return wait


# --- the pipeline state shared by the sync and async clients ---------------------------------------


@dataclass(slots=True)
class _Pending:
    seq: int
    first_index: int
    message: pb.EventBatch


@dataclass(slots=True)
class _Attempt:
    """One stream. Its requests resend every unacked batch first, then new ones."""

    next_seq: int = -1
    acked: int = 0
    closed: bool = False
    timed_out: bool = False
    last_progress: float = field(default_factory=time.monotonic)
    call: Any = None


@dataclass(frozen=True, slots=True)
class _Take:
    first_index: int
    events: list[UsageEvent]


_END: Final = object()


class _Pipe:
    """Events in (add), batches out (next_request), acks back (on_ack): no I/O and no locking here.

    The sync client drives it under a threading.Condition, the async one from its event loop.
    """

    def __init__(
        self, batch_events_max: int, linger_s: float, window: int, message_bytes_max: int, errors_max: int
    ) -> None:
        self.batch_events_max = batch_events_max
        self.linger_s = linger_s
        self.window = window
        self.message_bytes_max = message_bytes_max
        self.errors_max = errors_max
        self.current: list[UsageEvent] = []
        self.current_first = 0
        self.current_deadline = 0.0
        self.sealed: deque[tuple[int, list[UsageEvent]]] = deque()
        self.next_index = 0
        self.closed = False
        self.unacked: deque[_Pending] = deque()
        self.next_seq = 1
        self.summary = IngestSummary()
        self.failure: IngestError | None = None

    # producer side

    def room(self) -> bool:
        return len(self.sealed) < self.window

    def add(self, event: UsageEvent) -> tuple[int, bool]:
        """Buffer one event; returns (its index, whether waiters should wake)."""
        if not isinstance(event, UsageEvent):
            raise TypeError(f"event {self.next_index} is a {type(event).__name__}, not a UsageEvent")
        wake = not self.current
        if wake:
            self.current_first = self.next_index
            self.current_deadline = time.monotonic() + self.linger_s
        self.current.append(event)
        index = self.next_index
        self.next_index += 1
        if len(self.current) >= self.batch_events_max:
            self.seal()
            wake = True
        return index, wake

    def seal(self) -> None:
        if self.current:
            self.sealed.append((self.current_first, self.current))
            self.current = []

    def has_data(self) -> bool:
        return bool(self.sealed or self.current)

    def exhausted(self) -> bool:
        return self.closed and not self.sealed and not self.current

    def done(self) -> bool:
        return self.exhausted() and not self.unacked

    def settled(self) -> bool:
        """Everything added so far is acked (what flush waits for)."""
        return not self.unacked and not self.sealed and not self.current

    # request side

    def next_request(self, attempt: _Attempt) -> _Pending | _Take | float | object | None:
        """The next thing for this stream: a batch to (re)send, events to encode, a wait in seconds
        (None: until notified), or _END."""
        if attempt.closed or self.failure is not None:
            return _END
        if attempt.next_seq < 0:
            attempt.next_seq = self.unacked[0].seq if self.unacked else self.next_seq
        if self.unacked and attempt.next_seq <= self.unacked[-1].seq:
            return self.unacked[attempt.next_seq - self.unacked[0].seq]
        if len(self.unacked) >= self.window:
            return None
        now = time.monotonic()
        if not self.sealed and self.current and (self.closed or now >= self.current_deadline):
            self.seal()
        if self.sealed:
            first, events = self.sealed.popleft()
            return _Take(first, events)
        if self.exhausted():
            return _END
        return max(0.0, self.current_deadline - now) if self.current else None

    def encode(self, take: _Take) -> list[tuple[int, pb.EventBatch]]:
        """Encode outside any lock; a batch over the message size limit is split in halves."""
        out: list[tuple[int, pb.EventBatch]] = []
        todo = [(take.first_index, take.events)]
        while todo:
            first, events = todo.pop()
            message = encode_batch(events)
            if len(events) > 1 and message.ByteSize() > self.message_bytes_max - 1024:
                half = len(events) // 2
                todo.append((first + half, events[half:]))
                todo.append((first, events[:half]))
                continue
            out.append((first, message))
        return out

    def register(self, encoded: list[tuple[int, pb.EventBatch]]) -> None:
        for first, message in encoded:
            message.batch_id = f"b{self.next_seq}"
            self.unacked.append(_Pending(self.next_seq, first, message))
            self.next_seq += 1

    def sent(self, attempt: _Attempt, item: _Pending) -> None:
        attempt.next_seq = item.seq + 1

    # ack side

    def on_ack(self, ack: pb.IngestAck, attempt: _Attempt) -> BatchResult:
        attempt.acked += 1
        if not self.unacked or ack.sequence != attempt.acked or ack.batch_id != self.unacked[0].message.batch_id:
            head = self.unacked[0].message.batch_id if self.unacked else "nothing"
            raise IngestError(
                grpc.StatusCode.INTERNAL,
                f"ack out of order: got sequence {ack.sequence} batch {ack.batch_id!r}, "
                f"expected {attempt.acked} batch {head!r}",
                self.summary,
            )
        pending = self.unacked.popleft()
        result = _batch_result(pending.first_index, pending.message, ack)
        s = self.summary
        s.accepted += result.accepted
        s.duplicate += result.duplicate
        s.rejected += result.rejected
        s.batches += 1
        s.refused_batches += result.refused
        room = self.errors_max - len(s.errors)
        if room > 0:
            s.errors.extend(result.errors[:room])
        attempt.last_progress = time.monotonic()
        return result

    def take_summary(self) -> IngestSummary:
        summary, self.summary = self.summary, IngestSummary()
        return summary


def _channel_options(message_bytes_max: int, backoff_max_s: float) -> list[tuple[str, Any]]:
    # gRPC's own reconnect backoff grows to 120 s by default; a restarted server must be found fast.
    reconnect_ms = max(100, int(backoff_max_s * 1000))
    return [
        ("grpc.max_send_message_length", message_bytes_max),
        ("grpc.max_receive_message_length", message_bytes_max),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", reconnect_ms),
    ]


@dataclass(frozen=True, slots=True)
class _Config:
    target: str
    metadata: tuple[tuple[str, str], ...]
    batch_events_max: int
    linger_s: float
    window: int
    retries_max: int
    backoff_initial_s: float
    backoff_max_s: float
    ack_timeout_s: float
    message_bytes_max: int
    errors_max: int

    def pipe(self) -> _Pipe:
        return _Pipe(self.batch_events_max, self.linger_s, self.window, self.message_bytes_max, self.errors_max)

    def backoff(self) -> _Backoff:
        return _Backoff(self.retries_max, self.backoff_initial_s, self.backoff_max_s)


def _config(
    target: str,
    api_key: str,
    batch_events_max: int,
    linger_ms: float,
    max_inflight_batches: int,
    retries_max: int,
    backoff_initial_ms: float,
    backoff_max_ms: float,
    ack_timeout_s: float,
    message_bytes_max: int,
    errors_max: int,
) -> _Config:
    if batch_events_max < 1 or max_inflight_batches < 1 or retries_max < 0:
        raise ValueError("batch_events_max and max_inflight_batches must be >= 1, retries_max >= 0")
    return _Config(
        target=target,
        metadata=(("authorization", f"Bearer {api_key}"),),
        batch_events_max=batch_events_max,
        linger_s=linger_ms / 1000,
        window=max_inflight_batches,
        retries_max=retries_max,
        backoff_initial_s=backoff_initial_ms / 1000,
        backoff_max_s=backoff_max_ms / 1000,
        ack_timeout_s=ack_timeout_s,
        message_bytes_max=message_bytes_max,
        errors_max=errors_max,
    )


OnAck = Callable[[BatchResult], None]


# --- sync client -----------------------------------------------------------------------------------


class _SyncPipeline:
    """A _Pipe driven over successive streams by a background thread until it is closed and all acked."""

    def __init__(self, config: _Config, stub: Any, on_ack: OnAck | None) -> None:
        self.config = config
        self.stub = stub
        self.on_ack = on_ack
        self.pipe = config.pipe()
        self.cond = threading.Condition()
        self.backoff = config.backoff()
        self.attempt: _Attempt | None = None
        self.thread = threading.Thread(target=self._run_guarded, name="tally-ingest", daemon=True)
        self.thread.start()

    # called by the producer thread

    def add(self, event: UsageEvent) -> int:
        with self.cond:
            while not self.pipe.room() and self.pipe.failure is None:
                self.cond.wait()
            if self.pipe.failure is not None:
                raise self.pipe.failure
            index, wake = self.pipe.add(event)
            if wake:
                self.cond.notify_all()
            return index

    def flush(self) -> IngestSummary:
        with self.cond:
            self.pipe.seal()
            self.cond.notify_all()
            while not self.pipe.settled() and self.pipe.failure is None:
                self.cond.wait()
            if self.pipe.failure is not None:
                raise self.pipe.failure
            return self.pipe.take_summary()

    def close(self) -> IngestSummary:
        with self.cond:
            self.pipe.closed = True
            self.cond.notify_all()
        self.thread.join()
        if self.pipe.failure is not None:
            raise self.pipe.failure
        return self.pipe.summary

    def abort(self) -> None:
        with self.cond:
            if self.pipe.failure is None:
                self.pipe.failure = IngestError(grpc.StatusCode.CANCELLED, "sending was interrupted", self.pipe.summary)
            self.pipe.closed = True
            if self.attempt is not None and self.attempt.call is not None:
                self.attempt.call.cancel()
            self.cond.notify_all()
        self.thread.join(timeout=10)

    # the background thread

    def _run_guarded(self) -> None:
        try:
            self._run()
        except IngestError as exc:
            failure = exc
        except BaseException as exc:  # a bug must not leave the producer waiting forever
            log.exception("ingest pipeline failed")
            failure = IngestError(grpc.StatusCode.INTERNAL, f"client error: {exc!r}", self.pipe.summary)
        else:
            return
        with self.cond:
            if self.pipe.failure is None:
                self.pipe.failure = failure
            self.cond.notify_all()

    def _run(self) -> None:
        pipe = self.pipe
        while True:
            with self.cond:
                while not (pipe.unacked or pipe.has_data() or pipe.closed) and pipe.failure is None:
                    self.cond.wait()
                if pipe.failure is not None or pipe.done():
                    return
                attempt = self.attempt = _Attempt()
            delay = self._stream(attempt)
            if delay:
                time.sleep(delay)

    def _stream(self, attempt: _Attempt) -> float:
        pipe = self.pipe
        call = self.stub.Ingest(self._requests(attempt), metadata=self.config.metadata)
        with self.cond:
            attempt.call = call
        watchdog = threading.Thread(target=self._watch, args=(attempt,), daemon=True)
        watchdog.start()
        try:
            for ack in call:
                with self.cond:
                    result = pipe.on_ack(ack, attempt)
                    self.backoff.reset()
                    self.cond.notify_all()
                if self.on_ack is not None:
                    self.on_ack(result)
            with self.cond:
                if pipe.unacked and pipe.failure is None:
                    # The server ended the stream cleanly without acking everything: resend.
                    return self.backoff.delay(
                        grpc.StatusCode.UNAVAILABLE, "stream ended with batches unacked", 0, pipe.summary
                    )
            return 0.0
        except grpc.RpcError as exc:
            code, details, retry_after_ms = _status(exc)
            with self.cond:
                if pipe.failure is not None:
                    return 0.0
                if attempt.timed_out:
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                    details = f"no ack within {self.config.ack_timeout_s:g} s"
                if not pipe.unacked and not pipe.has_data() and code in RETRYABLE:
                    pipe.summary.retry_log.append(f"{code.name}: {details} (idle stream)")
                    return 0.0  # nothing was in flight: reconnect only when there is something to send
                return self.backoff.delay(code, details, retry_after_ms, pipe.summary)
        finally:
            with self.cond:
                attempt.closed = True
                self.cond.notify_all()
            call.cancel()

    def _watch(self, attempt: _Attempt) -> None:
        """Cancels a stream whose acks stopped coming while batches are in flight (a silent network)."""
        timeout = self.config.ack_timeout_s
        with self.cond:
            while not attempt.closed:
                self.cond.wait(min(1.0, timeout / 4))
                if attempt.closed:
                    return
                idle = time.monotonic() - attempt.last_progress
                if not self.pipe.unacked:
                    attempt.last_progress = time.monotonic()
                elif idle > timeout:
                    attempt.timed_out = True
                    attempt.call.cancel()
                    return

    def _requests(self, attempt: _Attempt) -> Iterator[pb.EventBatch]:
        pipe = self.pipe
        while True:
            with self.cond:
                step = pipe.next_request(attempt)
                while step is None or isinstance(step, float):
                    self.cond.wait(step)
                    step = pipe.next_request(attempt)
                if isinstance(step, _Pending):
                    pipe.sent(attempt, step)
            if step is _END:
                return
            if isinstance(step, _Take):
                encoded = pipe.encode(step)
                with self.cond:
                    pipe.register(encoded)
                continue
            assert isinstance(step, _Pending)
            yield step.message


class _ClientBase:
    """What both clients share: settings checked once, one channel, one stub."""

    def __init__(
        self,
        target: str,
        api_key: str,
        *,
        batch_events_max: int = 1000,
        linger_ms: float = 20,
        max_inflight_batches: int = 8,
        retries_max: int = 10,
        backoff_initial_ms: float = 50,
        backoff_max_ms: float = 2000,
        ack_timeout_s: float = 60,
        message_bytes_max: int = MESSAGE_BYTES_MAX,
        errors_max: int = 10_000,
    ) -> None:
        self._config = _config(
            target, api_key, batch_events_max, linger_ms, max_inflight_batches, retries_max,
            backoff_initial_ms, backoff_max_ms, ack_timeout_s, message_bytes_max, errors_max,
        )  # fmt: skip
        self.target = target
        self._channel = self._open_channel(target, _channel_options(message_bytes_max, backoff_max_ms / 1000))
        self._stub: Any = pb_grpc.IngestServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()  # guards the sync client's background pipeline

    def _open_channel(self, target: str, options: list[tuple[str, Any]]) -> Any:
        raise NotImplementedError


class IngestClient(_ClientBase):
    """Synchronous client. Thread-safe for `add`; one `send` at a time per client is the usual use.

    `send(events)` streams an iterable and returns when every event is acked. `add(event)` buffers
    events one at a time (sent by a background thread, by size or after `linger_ms`) and
    `flush()` waits for their acks. Both reconnect on UNAVAILABLE, DEADLINE_EXCEEDED and
    RESOURCE_EXHAUSTED (honouring `retry-after-ms`) and resend every unacked batch unchanged;
    `retries_max` bounds the failed attempts in a row without a single ack.
    """

    _background: _SyncPipeline | None = None

    def _open_channel(self, target: str, options: list[tuple[str, Any]]) -> grpc.Channel:
        return grpc.insecure_channel(target, options=options)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except IngestError as close_error:
            log.warning("events buffered by add() were not all acked: %s", close_error)

    def wait_ready(self, timeout_s: float = 5.0) -> None:
        """Connect now; raise IngestError(UNAVAILABLE) if the server cannot be reached (fast: no retries)."""
        states: list[grpc.ChannelConnectivity] = []
        settled = threading.Event()

        def watch(state: grpc.ChannelConnectivity) -> None:
            states.append(state)
            if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
                settled.set()

        self._channel.subscribe(watch, try_to_connect=True)
        try:
            settled.wait(timeout_s)
        finally:
            self._channel.unsubscribe(watch)
        if not states or states[-1] is not grpc.ChannelConnectivity.READY:
            why = "connection refused or failed" if settled.is_set() else f"no connection within {timeout_s:g} s"
            raise IngestError(grpc.StatusCode.UNAVAILABLE, f"cannot reach {self.target} ({why})")

    def send(self, events: Iterable[UsageEvent], *, on_ack: OnAck | None = None) -> IngestSummary:
        """Stream every event and return once all are acked.

        Indices in the summary are positions in `events`. If iterating `events` raises, the events
        taken before are still sent and acked, then the exception propagates. `on_ack` runs on the
        client's sender thread once per acked batch: keep it quick (a progress bar, a counter).
        """
        started = time.monotonic()
        pipeline = _SyncPipeline(self._config, self._stub, on_ack)
        try:
            for event in events:
                pipeline.add(event)
        except IngestError:
            pipeline.abort()
            raise
        except BaseException as exc:
            if isinstance(exc, Exception):
                with contextlib.suppress(IngestError):
                    pipeline.close()  # deliver what was taken before the failure
            else:
                pipeline.abort()
            raise
        summary = pipeline.close()
        summary.elapsed_s = time.monotonic() - started
        return summary

    def add(self, event: UsageEvent) -> int:
        """Buffer one event for the background sender; returns its index (counted over this client's life)."""
        with self._lock:
            if self._background is None:
                self._background = _SyncPipeline(self._config, self._stub, None)
            background = self._background
        return background.add(event)

    def flush(self) -> IngestSummary:
        """Send what add() buffered and wait for every ack; returns the outcome since the previous flush."""
        with self._lock:
            background = self._background
        if background is None:
            return IngestSummary()
        return background.flush()

    def ingest_batch(
        self, events: Sequence[UsageEvent], *, atomic: bool = False, batch_id: str = "", timeout_s: float = 30
    ) -> IngestSummary:
        """One unary IngestBatch (at most the server's batch_events_max events), retried like streams."""
        started = time.monotonic()
        message = encode_batch(list(events), batch_id, atomic)
        summary = IngestSummary()
        backoff = self._config.backoff()
        while True:
            try:
                ack = self._stub.IngestBatch(message, metadata=self._config.metadata, timeout=timeout_s)
            except grpc.RpcError as exc:
                code, details, retry_after_ms = _status(exc)
                time.sleep(backoff.delay(code, details, retry_after_ms, summary))
                continue
            _add_unary(summary, message, ack, self._config.errors_max)
            summary.elapsed_s = time.monotonic() - started
            return summary

    def close(self) -> None:
        """Deliver what add() buffered, then close the channel."""
        with self._lock:
            background, self._background = self._background, None
        try:
            if background is not None:
                background.close()
        finally:
            self._channel.close()


def _add_unary(summary: IngestSummary, message: pb.EventBatch, ack: pb.IngestAck, errors_max: int) -> None:
    result = _batch_result(0, message, ack)
    summary.accepted += result.accepted
    summary.duplicate += result.duplicate
    summary.rejected += result.rejected
    summary.batches += 1
    summary.refused_batches += result.refused
    summary.errors.extend(result.errors[:errors_max])


def ingest_batch(
    target: str, api_key: str, events: Sequence[UsageEvent], *, atomic: bool = False, timeout_s: float = 30
) -> IngestSummary:
    """Send one batch with the unary IngestBatch call, for scripts that send rarely."""
    with IngestClient(target, api_key) as client:
        return client.ingest_batch(events, atomic=atomic, timeout_s=timeout_s)


# --- async client ----------------------------------------------------------------------------------


class _Signal:
    """Wake every waiter (asyncio): the event loop is single-threaded, so state needs no lock."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify_all(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, timeout: float | None = None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout)


# grpc.aio replaces the server's status with this one when a write fails because the server has just
# ended the stream (an abort: bad key, full queue, drain): https://github.com/grpc/grpc/issues/36066.
# Resending is safe whatever the real status was, so it is retried like UNAVAILABLE.
_AIO_LOST_STATUS: Final = "Internal error from Core"


class _AsyncPipeline:
    def __init__(self, config: _Config, stub: Any, on_ack: OnAck | None) -> None:
        self.config = config
        self.stub = stub
        self.on_ack = on_ack
        self.pipe = config.pipe()
        self.signal = _Signal()
        self.backoff = config.backoff()
        self.attempt: _Attempt | None = None
        self.task = asyncio.create_task(self._run_guarded())

    async def add(self, event: UsageEvent) -> int:
        while not self.pipe.room() and self.pipe.failure is None:
            await self.signal.wait()
        if self.pipe.failure is not None:
            raise self.pipe.failure
        index, wake = self.pipe.add(event)
        if wake:
            self.signal.notify_all()
        return index

    async def flush(self) -> IngestSummary:
        self.pipe.seal()
        self.signal.notify_all()
        while not self.pipe.settled() and self.pipe.failure is None:
            await self.signal.wait()
        if self.pipe.failure is not None:
            raise self.pipe.failure
        return self.pipe.take_summary()

    async def close(self) -> IngestSummary:
        self.pipe.closed = True
        self.signal.notify_all()
        await self.task
        if self.pipe.failure is not None:
            raise self.pipe.failure
        return self.pipe.summary

    async def abort(self) -> None:
        if self.pipe.failure is None:
            self.pipe.failure = IngestError(grpc.StatusCode.CANCELLED, "sending was interrupted", self.pipe.summary)
        self.pipe.closed = True
        if self.attempt is not None and self.attempt.call is not None:
            self.attempt.call.cancel()
        self.signal.notify_all()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, IngestError):
            await self.task

    async def _run_guarded(self) -> None:
        try:
            await self._run()
        except IngestError as exc:
            failure = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("ingest pipeline failed")
            failure = IngestError(grpc.StatusCode.INTERNAL, f"client error: {exc!r}", self.pipe.summary)
        else:
            return
        if self.pipe.failure is None:
            self.pipe.failure = failure
        self.signal.notify_all()

    async def _run(self) -> None:
        pipe = self.pipe
        while True:
            while not (pipe.unacked or pipe.has_data() or pipe.closed) and pipe.failure is None:
                await self.signal.wait()
            if pipe.failure is not None or pipe.done():
                return
            attempt = self.attempt = _Attempt()
            delay = await self._stream(attempt)
            if delay:
                await asyncio.sleep(delay)

    async def _stream(self, attempt: _Attempt) -> float:
        pipe = self.pipe
        call = self.stub.Ingest(self._requests(attempt), metadata=self.config.metadata)
        attempt.call = call
        watchdog = asyncio.create_task(self._watch(attempt))
        try:
            async for ack in call:
                result = pipe.on_ack(ack, attempt)
                self.backoff.reset()
                self.signal.notify_all()
                if self.on_ack is not None:
                    self.on_ack(result)
            if pipe.unacked and pipe.failure is None:
                return self.backoff.delay(
                    grpc.StatusCode.UNAVAILABLE, "stream ended with batches unacked", 0, pipe.summary
                )
            return 0.0
        except grpc.aio.AioRpcError as exc:
            code, details, retry_after_ms = _status(exc)
            if code is grpc.StatusCode.INTERNAL and details == _AIO_LOST_STATUS:
                code = grpc.StatusCode.UNAVAILABLE
                details = "the server ended the stream during a write; its status was lost (grpc/grpc#36066)"
        except asyncio.CancelledError:
            if not attempt.timed_out:
                raise
            code, details, retry_after_ms = grpc.StatusCode.CANCELLED, "", 0
        finally:
            attempt.closed = True
            self.signal.notify_all()
            call.cancel()
            watchdog.cancel()
        if pipe.failure is not None:
            return 0.0
        if attempt.timed_out:
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            details = f"no ack within {self.config.ack_timeout_s:g} s"
        if not pipe.unacked and not pipe.has_data() and code in RETRYABLE:
            pipe.summary.retry_log.append(f"{code.name}: {details} (idle stream)")
            return 0.0
        return self.backoff.delay(code, details, retry_after_ms, pipe.summary)

    async def _watch(self, attempt: _Attempt) -> None:
        timeout = self.config.ack_timeout_s
        while not attempt.closed:
            await asyncio.sleep(min(1.0, timeout / 4))
            if not self.pipe.unacked:
                attempt.last_progress = time.monotonic()
            elif time.monotonic() - attempt.last_progress > timeout:
                attempt.timed_out = True
                attempt.call.cancel()
                return

    async def _requests(self, attempt: _Attempt) -> AsyncIterator[pb.EventBatch]:
        pipe = self.pipe
        while True:
            step = pipe.next_request(attempt)
            while step is None or isinstance(step, float):
                await self.signal.wait(step)
                step = pipe.next_request(attempt)
            if step is _END:
                return
            if isinstance(step, _Take):
                pipe.register(pipe.encode(step))
                continue
            assert isinstance(step, _Pending)
            pipe.sent(attempt, step)
            yield step.message


class AsyncIngestClient(_ClientBase):
    """The asyncio twin of IngestClient (grpc.aio): same batching, pipelining and resend rules."""

    _background: _AsyncPipeline | None = None

    def _open_channel(self, target: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(target, options=options)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.close()
            return
        try:
            await self.close()
        except IngestError as close_error:
            log.warning("events buffered by add() were not all acked: %s", close_error)

    async def wait_ready(self, timeout_s: float = 5.0) -> None:
        """Connect now; raise IngestError(UNAVAILABLE) if the server cannot be reached."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        state = self._channel.get_state(try_to_connect=True)
        while state not in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._channel.wait_for_state_change(state), remaining)
            state = self._channel.get_state(try_to_connect=True)
        if state is not grpc.ChannelConnectivity.READY:
            raise IngestError(grpc.StatusCode.UNAVAILABLE, f"cannot reach {self.target} ({state.name})")

    async def send(
        self, events: Iterable[UsageEvent] | AsyncIterable[UsageEvent], *, on_ack: OnAck | None = None
    ) -> IngestSummary:
        """Stream every event (sync or async iterable) and return once all are acked."""
        started = time.monotonic()
        pipeline = _AsyncPipeline(self._config, self._stub, on_ack)
        try:
            if isinstance(events, AsyncIterable):
                async for event in events:
                    await pipeline.add(event)
            else:
                for event in events:
                    await pipeline.add(event)
        except IngestError:
            await pipeline.abort()
            raise
        except BaseException as exc:
            if isinstance(exc, Exception):
                with contextlib.suppress(IngestError):
                    await pipeline.close()
            else:
                await pipeline.abort()
            raise
        summary = await pipeline.close()
        summary.elapsed_s = time.monotonic() - started
        return summary

    async def add(self, event: UsageEvent) -> int:
        if self._background is None:
            self._background = _AsyncPipeline(self._config, self._stub, None)
        return await self._background.add(event)

    async def flush(self) -> IngestSummary:
        if self._background is None:
            return IngestSummary()
        return await self._background.flush()

    async def ingest_batch(
        self, events: Sequence[UsageEvent], *, atomic: bool = False, batch_id: str = "", timeout_s: float = 30
    ) -> IngestSummary:
        started = time.monotonic()
        message = encode_batch(list(events), batch_id, atomic)
        summary = IngestSummary()
        backoff = self._config.backoff()
        while True:
            try:
                ack = await self._stub.IngestBatch(message, metadata=self._config.metadata, timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                code, details, retry_after_ms = _status(exc)
                await asyncio.sleep(backoff.delay(code, details, retry_after_ms, summary))
                continue
            _add_unary(summary, message, ack, self._config.errors_max)
            summary.elapsed_s = time.monotonic() - started
            return summary

    async def close(self) -> None:
        background, self._background = self._background, None
        try:
            if background is not None:
                await background.close()
        finally:
            await self._channel.close(grace=None)
