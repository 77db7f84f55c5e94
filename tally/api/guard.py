"""The server's outer wall: what every RPC of every service gets before its handler runs.

One interceptor, so no handler can forget it:

* **Bodies that are not valid protobuf** are refused with INVALID_ARGUMENT. gRPC's own answer to a
  request it cannot deserialize is INTERNAL ("Exception deserializing request!"), which tells a client
  the server is broken when it is the request that is.
* **Text is checked once, for every string field at any depth** (map keys and values included): NUL and
  the other C0 control characters but tab, line feed and carriage return, and DEL, are refused with the
  field's path. PostgreSQL cannot store NUL at all, and a control character in a name, a URL or an id
  is never meant. Ingest applies the same rule per event (`metering.event`), so one bad event does not
  refuse its batch.
* **Streams are counted per API key and in all**: a key may hold `streams_per_key_max` open streams
  (Ingest, WatchEvents) and the server `streams_max`; one more is RESOURCE_EXHAUSTED naming the limit.
  With `stream_buffered_bytes_max` per stream that bounds the memory clients can pin by never reading.
* **A stream's key is re-checked while it lives**: every `recheck_s`, and before each message, the key is
  authenticated again (from a cache no older than `key_max_age_s`), so a revoked key's open streams end
  with UNAUTHENTICATED within `recheck_s + key_max_age_s` (5 s by default), as they would on a new call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from metering.errors import InvalidArgument, ResourceExhausted, TallyError, Unauthenticated
from metering.limits import ApiLimits
from metering.tenant import KeyStore
from metering.text import control_problem
from tally.errors import abort

_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_REPEATED = FieldDescriptor.LABEL_REPEATED


def _repeated(fd: FieldDescriptor) -> bool:
    return getattr(fd, "label", None) == _REPEATED or bool(getattr(fd, "is_repeated", False))


def text_problem(message: Message, path: str = "") -> str | None:
    """The first string field (depth first, in field order) holding a control character, as a message."""
    for fd, value in message.ListFields():
        name = f"{path}{fd.name}"
        if fd.type == _MESSAGE:
            entry: Any = fd.message_type
            if entry.GetOptions().map_entry:
                value_fd = entry.fields_by_name["value"]
                for k, v in value.items():
                    if isinstance(k, str) and (problem := control_problem(k, f"{name} key")):
                        return problem
                    where = f"{name}[{k!r}]"
                    if value_fd.type == _STRING:
                        if problem := control_problem(v, where):
                            return problem
                    elif value_fd.type == _MESSAGE and (problem := text_problem(v, f"{where}.")):
                        return problem
            elif _repeated(fd):
                for i, item in enumerate(value):
                    if problem := text_problem(item, f"{name}[{i}]."):
                        return problem
            elif problem := text_problem(value, f"{name}."):
                return problem
        elif fd.type == _STRING:
            if _repeated(fd):
                for i, item in enumerate(value):
                    if problem := control_problem(item, f"{name}[{i}]"):
                        return problem
            elif problem := control_problem(value, name):
                return problem
    return None


class _Malformed:
    """What the guarded deserializer returns for bytes that are not the request message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, and anything a parser raises on hostile bytes
            return _Malformed(type(exc).__name__)

    return parse


def _authorization(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
    return None


class Guard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        keys: KeyStore,
        limits: ApiLimits,
        text_checked: Callable[[str], bool] = lambda method: not method.startswith("/tally.v1.IngestService/"),
        recheck_s: float = 1.0,
        key_max_age_s: float = 4.0,
    ) -> None:
        self._keys = keys
        self._limits = limits
        self._text_checked = text_checked
        self._recheck_s = recheck_s
        self._key_max_age_s = key_max_age_s
        self._streams: dict[str, int] = {}  # SHA-256 of the presented key -> open streams
        self._streams_open = 0

    @property
    def streams_open(self) -> int:
        return self._streams_open

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        check_text = self._text_checked(method)
        authorization = _authorization(details.invocation_metadata)
        replaced: dict[str, Any] = {
            "request_deserializer": _safe(handler.request_deserializer),
        }
        if handler.unary_unary is not None:
            replaced["unary_unary"] = self._unary(handler.unary_unary, check_text)
        elif handler.unary_stream is not None:
            replaced["unary_stream"] = self._streaming(handler.unary_stream, check_text, authorization, False)
        elif handler.stream_unary is not None:
            replaced["stream_unary"] = self._stream_unary(handler.stream_unary, check_text)
        elif handler.stream_stream is not None:
            replaced["stream_stream"] = self._streaming(handler.stream_stream, check_text, authorization, True)
        return handler._replace(**replaced)

    # --- what the HTTP routes wrap the same handlers in ----------------------------------------------------
    def unary(self, behavior: Callable[..., Any], check_text: bool = True) -> Callable[..., Any]:
        return self._unary(behavior, check_text)

    def server_stream(
        self, behavior: Callable[..., AsyncIterator[Any]], authorization: str | None
    ) -> Callable[..., AsyncIterator[Any]]:
        return self._streaming(behavior, True, authorization, False)

    # --- requests ----------------------------------------------------------------------------------------
    @staticmethod
    def _check(request: Any, check_text: bool) -> None:
        if isinstance(request, _Malformed):
            raise InvalidArgument(
                f"the request body is not a valid message of this method ({request.reason}); "
                "send the protobuf encoding of the request type the .proto declares"
            )
        if check_text and isinstance(request, Message):
            problem = text_problem(request)
            if problem is not None:
                raise InvalidArgument(problem)

    def _unary(self, behavior: Callable[..., Any], check_text: bool) -> Callable[..., Any]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                self._check(request, check_text)
            except TallyError as exc:
                await abort(context, exc, "guard")
            return await behavior(request, context)

        return guarded

    def _stream_unary(self, behavior: Callable[..., Any], check_text: bool) -> Callable[..., Any]:
        async def guarded(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await behavior(self._checked_requests(requests, check_text, None), context)

        return guarded

    async def _checked_requests(
        self, requests: AsyncIterator[Any], check_text: bool, authorization: str | None
    ) -> AsyncIterator[Any]:
        async for request in requests:
            self._check(request, check_text)
            if authorization is not None:
                self._still_valid(authorization)
            yield request

    # --- streams -----------------------------------------------------------------------------------------
    def _still_valid(self, authorization: str) -> None:
        try:
            self._keys.authenticate(authorization, max_age_s=self._key_max_age_s)
        except Unauthenticated:
            raise Unauthenticated(
                "this stream's API key was revoked (or is no longer valid); the stream was closed"
            ) from None

    def _open(self, authorization: str | None) -> str:
        digest = hashlib.sha256((authorization or "").encode()).hexdigest()
        held = self._streams.get(digest, 0)
        if held >= self._limits.streams_per_key_max:
            raise ResourceExhausted(
                f"this API key already holds {held} open streams (streams_per_key_max="
                f"{self._limits.streams_per_key_max}); close one or reuse a stream",
                retry_after_ms=1000,
            )
        if self._streams_open >= self._limits.streams_max:
            raise ResourceExhausted(
                f"the server holds streams_max={self._limits.streams_max} open streams; retry later",
                retry_after_ms=1000,
            )
        self._streams[digest] = held + 1
        self._streams_open += 1
        return digest

    def _close(self, digest: str) -> None:
        self._streams_open -= 1
        left = self._streams[digest] - 1
        if left:
            self._streams[digest] = left
        else:
            del self._streams[digest]

    def _streaming(
        self, behavior: Callable[..., AsyncIterator[Any]], check_text: bool, authorization: str | None, client: bool
    ) -> Callable[..., AsyncIterator[Any]]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            try:
                digest = self._open(authorization)
            except TallyError as exc:
                await abort(context, exc, "guard")
                return
            try:
                if client:
                    request = self._checked_requests(request, check_text, authorization)
                else:
                    self._check(request, check_text)
                responses = behavior(request, context)
                async for response in self._rechecked(responses, authorization):
                    yield response
            except TallyError as exc:
                await abort(context, exc, "guard")
            finally:
                self._close(digest)

        return guarded

    async def _rechecked(self, responses: AsyncIterator[Any], authorization: str | None) -> AsyncIterator[Any]:
        """Yield the handler's responses, re-checking the key every `recheck_s` while the handler waits."""
        iterator = aiter(responses)
        try:
            while True:
                nxt = asyncio.ensure_future(anext(iterator))
                try:
                    while True:
                        done, _ = await asyncio.wait({nxt}, timeout=self._recheck_s)
                        if done:
                            break
                        if authorization is not None:
                            self._still_valid(authorization)
                except BaseException:
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt
                    raise
                try:
                    response = nxt.result()
                except StopAsyncIteration:
                    return
                yield response
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                with contextlib.suppress(BaseException):
                    await close()


__all__ = ["Guard", "text_problem"]
