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
import contextvars
import functools
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Engine

from metering.deadline import Budget, activate
from metering.errors import InvalidArgument
from metering.limits import ApiLimits
from metering.tenant import KeyStore, Principal
from metering.text import control_problem
from rating.errors import RatingError
from rating.fixedpoint import parse_decimal
from tally.errors import abort

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
    limits: ApiLimits

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

    def budget(self, context: Context | None) -> Budget:
        """The work a request may do: the server's cap, or the client's deadline when that is sooner."""
        seconds = self.limits.request_seconds_max
        remaining = context.time_remaining() if context is not None else None
        if remaining is not None:
            seconds = min(seconds, max(remaining, 0.0))
        return Budget(seconds)

    async def run(self, fn: Callable[..., Resp], *args: Any, context: Context | None = None) -> Resp:
        """Run domain code on the pool under the request's budget; if the call is cancelled (the client
        went away or its deadline passed) the budget is cancelled too, so the worker's next
        `checkpoint()` stops it instead of finishing work nobody will read."""
        budget = self.budget(context)
        ctx = contextvars.copy_context()
        ctx.run(activate, budget)
        call = functools.partial(ctx.run, functools.partial(fn, *args))
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        except asyncio.CancelledError:
            budget.cancel()
            raise


Handler = Callable[[Any, Principal, Any], Any]
AsyncHandler = Callable[[Any, Any, Context], Coroutine[Any, Any, Any]]


def rpc(scope: str) -> Callable[[Handler], AsyncHandler]:
    """Make a unary RPC from a synchronous `(self, principal, request) -> response` function."""

    def wrap(fn: Handler) -> AsyncHandler:
        @functools.wraps(fn)
        async def method(self: ApiBase, request: Any, context: Context) -> Any:
            try:
                principal = self.principal(context, scope)
                return await self.run(fn, self, principal, request, context=context)
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


#: Instants accepted from clients: billing needs no other years, and a margin of a century on both sides
#: keeps every local time in every zone (and a period or two added to it) inside Python's datetime.
INSTANT_MIN = datetime(1900, 1, 1, tzinfo=UTC)
INSTANT_END = datetime(2200, 1, 1, tzinfo=UTC)
INSTANT_MIN_S = int(INSTANT_MIN.timestamp())
INSTANT_END_S = int(INSTANT_END.timestamp())


def instant(message: Any, field: str, default: datetime | None = None) -> datetime | None:
    """A Timestamp field as an aware UTC datetime; unset gives `default`."""
    if not message.HasField(field):
        return default
    ts: Timestamp = getattr(message, field)
    if not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidArgument(f"{field}: nanos must be 0..999999999")
    if not INSTANT_MIN_S <= ts.seconds < INSTANT_END_S:
        raise InvalidArgument(
            f"{field}: {ts.seconds} s since 1970 is outside the instants Tally accepts "
            f"({INSTANT_MIN:%Y-%m-%d} to {INSTANT_END:%Y-%m-%d}, UTC)"
        )
    return ts.ToDatetime(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    return value


#: Ids are 32-bit integer keys on every database: a larger number can name nothing.
ID_MAX = 2**31 - 1


def positive_id(value: int, field: str = "id") -> int:
    if not 0 < value <= ID_MAX:
        raise InvalidArgument(f"{field} must be an id from 1 to {ID_MAX}, got {value}")
    return value


def decimal_arg(text: str, field: str, *, allow_empty: bool = False, positive: bool = False) -> Decimal | None:
    """An exact decimal from a string field: plain notation only, never a float."""
    if not text:
        if allow_empty:
            return None
        raise InvalidArgument(f'{field} is required (an exact decimal such as "12.50")')
    try:
        value = parse_decimal(text, field)
    except RatingError as exc:
        raise InvalidArgument(str(exc)) from None
    if positive and value <= 0:
        raise InvalidArgument(f"{field} must be positive, got {text}")
    return value


def decimal_str(value: Decimal | int) -> str:
    """A decimal for the wire: plain notation, never an exponent."""
    return format(Decimal(value), "f")


# --- client JSON -------------------------------------------------------------------------------------------
def json_shape_problem(text: str, bytes_max: int, depth_max: int) -> str | None:
    """Why a JSON document is too big or too deep to parse, found by one linear scan (no recursion), or None.

    Checked before any parser sees the text: Python's and pydantic's parsers recurse per nesting level,
    so "[[[[...]]]]" ten thousand deep would fail inside them with an error no handler expects."""
    if len(text) > bytes_max or len(text.encode()) > bytes_max:
        return f"is larger than json_bytes_max={bytes_max} bytes"
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > depth_max:
                return f"nests objects and arrays deeper than json_depth_max={depth_max}"
        elif ch in "]}":
            depth -= 1
    return None


def client_json(text: str, field: str, limits: ApiLimits) -> Any:
    """A JSON document from a request field: bounded in size and depth, NaN/Infinity refused, and every
    key and string in it held to the same text rule as a protobuf string field."""
    problem = json_shape_problem(text, limits.json_bytes_max, limits.json_depth_max)
    if problem is not None:
        raise InvalidArgument(f"{field}: {problem}")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"{field}: not JSON ({str(exc)[:200]})") from None
    problem = _json_text_problem(value, field)
    if problem is not None:
        raise InvalidArgument(problem)
    return value


def _json_text_problem(value: Any, path: str) -> str | None:
    """Depth is bounded by json_depth_max before this runs, so the recursion is too."""
    if isinstance(value, str):
        return control_problem(value, path)
    if isinstance(value, dict):
        for k, v in value.items():
            if (problem := control_problem(k, f"{path} key")) or (problem := _json_text_problem(v, f"{path}.{k}")):
                return problem
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if problem := _json_text_problem(v, f"{path}[{i}]"):
                return problem
    return None


# --- paging --------------------------------------------------------------------------------------------------
def page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0 or requested > PAGE_SIZE_MAX:
        raise InvalidArgument(f"{field} must be 0..{PAGE_SIZE_MAX} (0 = {PAGE_SIZE_DEFAULT}), got {requested}")
    return requested or PAGE_SIZE_DEFAULT


def encode_token(key: Any) -> str:
    """An opaque page token holding the last item's sort key."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


K = TypeVar("K")
Item = TypeVar("Item")


def gather_pages(
    fetch: Callable[[K | None, int], tuple[list[Item], K | None]], after: K | None, size: int, domain_max: int
) -> tuple[list[Item], bool]:
    """Up to `size` items from a domain list that pages by at most `domain_max` (the API allows larger pages),
    read page after page from `after`; and whether more remain. `fetch(after, limit)` returns one page's
    items and the key to continue after (None at the end)."""
    out: list[Item] = []
    more = True
    while more and len(out) < size:
        items, after = fetch(after, min(size - len(out), domain_max))
        out += items
        more = after is not None
    return out, more


#: Longest page token accepted: the keys inside are one id or one code, far below this.
TOKEN_CHARS_MAX = 2048
_FORGED = "not a token this API issued; pass next_page_token unchanged"


def decode_token(token: str, field: str = "page_token") -> Any:
    """The sort key inside a page token; None for the first page. Prefer `int_token`/`str_token`, which
    also check the key's type and range: a token is client input like any other."""
    if not token:
        return None
    if len(token) > TOKEN_CHARS_MAX:
        raise InvalidArgument(f"{field}: {_FORGED}")
    try:
        padded = token + "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()), parse_constant=_no_constant)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidArgument(f"{field}: {_FORGED}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: never in a token we issued


def int_token(token: str, field: str = "page_token") -> int | None:
    """A token holding one id or sequence: an integer in 0..2**63-1, or None for the first page."""
    key = decode_token(token, field)
    if key is None:
        return None
    if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key <= 2**63 - 1:
        raise InvalidArgument(f"{field}: {_FORGED}")
    return key


def str_token(token: str, field: str = "page_token") -> str | None:
    """A token holding one code or external id (text without control characters), or None."""
    key = decode_token(token, field)
    if key is None:
        return None
    if not isinstance(key, str) or len(key) > 1024 or control_problem(key, field) is not None:
        raise InvalidArgument(f"{field}: {_FORGED}")
    return key


__all__ = [
    "ADMIN",
    "ID_MAX",
    "INGEST_OR_READ",
    "READ",
    "ApiBase",
    "ChangeListener",
    "Periodic",
    "Worker",
    "client_json",
    "decimal_arg",
    "decimal_str",
    "decode_token",
    "encode_token",
    "gather_pages",
    "instant",
    "int_token",
    "now",
    "page_size",
    "positive_id",
    "required",
    "rpc",
    "str_token",
    "stream_rpc",
    "timestamp",
]
