"""What every BillingService RPC shares: authentication, scopes, errors, conversions, paging.

An RPC is a plain synchronous function `(self, principal, request) -> response` decorated with
`@rpc(scope)`. The decorator authenticates the key, checks the scope, runs the function on the
API's thread pool (domain code is synchronous SQLAlchemy; the gRPC server is asyncio), and turns any
exception into a status through `metering.errors.grpc_status`, the one mapping. Tenancy is carried by
the principal: every domain call takes `principal.tenant_id`, so another tenant's resource is simply
not found.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Engine

from metering.errors import InvalidArgument, abort
from metering.tenant import KeyStore, Principal

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]

#: Scopes an RPC may declare. "read" RPCs also accept admin keys (Principal.require does that).
READ, ADMIN, INGEST_OR_READ = "read", "admin", "ingest|read"

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000


class Worker(Protocol):
    """A background job the API runs while the server is up (a thread of its own)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Periodic:
    """A Worker that runs `job(now)` every `interval_s` on its own thread until stopped.

    A failing pass is logged and the next one retries: a database hiccup must not end the worker.
    """

    def __init__(
        self,
        name: str,
        interval_s: float,
        job: Callable[[datetime], Any],
        on_result: Callable[[Any], None] | None = None,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.job = job
        self.on_result = on_result
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                result = self.job(datetime.now(UTC))
            except Exception:
                log.exception("%s pass failed", self.name)
                continue
            if self.on_result is not None:
                self.on_result(result)


#: Called after a change that can alter what a customer is entitled to (plan change, cancel,
#: top-up, conversion), with (tenant_id, customer external id), so caches refresh at once.
ChangeListener = Callable[[int, str], None]


class ApiBase:
    """State every mixin uses; `tally.api.service.BillingServicer` fills it."""

    engine: Engine
    keys: KeyStore
    executor: ThreadPoolExecutor
    listeners: list[ChangeListener]

    def changed(self, tenant_id: int, customer: str) -> None:
        """Tell in-process caches that this customer's plan or balances changed."""
        for listener in self.listeners:
            listener(tenant_id, customer)

    def principal(self, context: Context, scope: str) -> Principal:
        principal = self.keys.authenticate_call(context.invocation_metadata())
        allowed = scope.split("|")
        if not any(s in principal.scopes for s in allowed) and "admin" not in principal.scopes:
            principal.require(allowed[-1])  # raises PermissionDenied naming the scope
        return principal

    async def run(self, fn: Callable[..., Resp], *args: Any) -> Resp:
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))


Handler = Callable[[Any, Principal, Any], Any]
AsyncHandler = Callable[[Any, Any, Context], Coroutine[Any, Any, Any]]


def rpc(scope: str) -> Callable[[Handler], AsyncHandler]:
    """Make a unary RPC from a synchronous `(self, principal, request) -> response` function."""

    def wrap(fn: Handler) -> AsyncHandler:
        @functools.wraps(fn)
        async def method(self: ApiBase, request: Any, context: Context) -> Any:
            try:
                principal = self.principal(context, scope)
                return await self.run(fn, self, principal, request)
            except Exception as exc:
                await abort(context, exc, "BillingService")
                raise  # unreachable: abort raises

        method.tally_scope = scope  # type: ignore[attr-defined]
        return method

    return wrap


StreamHandler = Callable[[Any, Principal, Any, Context], AsyncIterator[Any]]


def stream_rpc(scope: str) -> Callable[[StreamHandler], Callable[[Any, Any, Context], AsyncIterator[Any]]]:
    """Make a server-streaming RPC from an async generator `(self, principal, request, context)`."""

    def wrap(fn: StreamHandler) -> Callable[[Any, Any, Context], AsyncIterator[Any]]:
        @functools.wraps(fn)
        async def method(self: ApiBase, request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                principal = self.principal(context, scope)
                async for item in fn(self, principal, request, context):
                    yield item
            except Exception as exc:
                await abort(context, exc, "BillingService")

        method.tally_scope = scope  # type: ignore[attr-defined]
        return method

    return wrap


# --- conversions ---------------------------------------------------------------------------------------------
def timestamp(moment: datetime | None) -> Timestamp | None:
    """A datetime as a protobuf Timestamp (None stays None, so the field is left unset)."""
    if moment is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
    return ts


def instant(message: Any, field: str, default: datetime | None = None) -> datetime | None:
    """A Timestamp field as an aware UTC datetime; unset gives `default`."""
    if not message.HasField(field):
        return default
    ts: Timestamp = getattr(message, field)
    if not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidArgument(f"{field}: nanos must be 0..999999999")
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"{field}: not a valid instant ({exc})") from None


def now() -> datetime:
    return datetime.now(UTC)


def required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    return value


def positive_id(value: int, field: str = "id") -> int:
    if value <= 0:
        raise InvalidArgument(f"{field} must be a positive id, got {value}")
    return value


def decimal_arg(text: str, field: str, *, allow_empty: bool = False, positive: bool = False) -> Decimal | None:
    """An exact decimal from a string field: plain notation only, never a float."""
    if not text:
        if allow_empty:
            return None
        raise InvalidArgument(f'{field} is required (an exact decimal such as "12.50")')
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidArgument(f"{field}: {text!r} is not a decimal number") from None
    if not value.is_finite() or "e" in text.lower():
        raise InvalidArgument(f"{field}: {text!r} must be a finite decimal in plain notation")
    if positive and value <= 0:
        raise InvalidArgument(f"{field} must be positive, got {text}")
    return value


def decimal_str(value: Decimal | int) -> str:
    """A decimal for the wire: plain notation, never an exponent."""
    return format(Decimal(value), "f")


# --- paging --------------------------------------------------------------------------------------------------
def page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0 or requested > PAGE_SIZE_MAX:
        raise InvalidArgument(f"{field} must be 0..{PAGE_SIZE_MAX} (0 = {PAGE_SIZE_DEFAULT}), got {requested}")
    return requested or PAGE_SIZE_DEFAULT


def encode_token(key: Any) -> str:
    """An opaque page token holding the last item's sort key."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, field: str = "page_token") -> Any:
    """The sort key inside a page token; None for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"{field}: not a token this API issued; pass next_page_token unchanged") from None


__all__ = [
    "ADMIN",
    "INGEST_OR_READ",
    "READ",
    "ApiBase",
    "ChangeListener",
    "Periodic",
    "Worker",
    "decimal_arg",
    "decimal_str",
    "decode_token",
    "encode_token",
    "instant",
    "now",
    "page_size",
    "positive_id",
    "required",
    "rpc",
    "stream_rpc",
    "timestamp",
]
