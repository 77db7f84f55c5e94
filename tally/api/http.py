"""JSON over HTTP beside gRPC: every method of tally.v1, the same handlers, keys, checks and error codes.

`POST /v1/<service>/<Method>` takes the request message as a JSON object and answers the response
message (`billing` for BillingService, `ingest` for IngestService's unary `IngestBatch`); read methods
also answer `GET` with the request's top-level fields as query parameters. `WatchEvents` streams one
JSON object per line. `GET /v1/openapi.json` is the OpenAPI document generated from the contract.

There is no second implementation: a route decodes the JSON into the protobuf request, runs the very
servicer method gRPC runs — behind the same guard (text checks, stream limits, key re-checks) — with a
context that carries the `Authorization` header as gRPC metadata, and maps the status the handler
aborts with through `tally.errors.STATUS`, the one table every edge uses. Starlette was chosen because
it runs on the asyncio loop the gRPC server already owns (one process, one set of caches and workers),
is small, typed and well kept, and leaves routing to us so the routes can be derived from descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from importlib import resources
from typing import Any

import grpc
import uvicorn
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from metering.errors import InvalidArgument, TallyError
from tally.api.guard import Guard
from tally.api.openapi import route_segment
from tally.errors import STATUS, outcome
from tally.v1 import billing_pb2, ingest_pb2

log = logging.getLogger(__name__)

_BY_GRPC = {s.grpc: (code, s.http) for code, s in STATUS.items()}
_NDJSON = "application/x-ndjson"
#: Seconds a client may ask for with the `Tally-Timeout` header; beyond it the server's own cap applies.
_TIMEOUT_HEADER = "tally-timeout"


class HttpAbort(Exception):
    """What `context.abort` raises for a call that came over HTTP: the status the handler chose."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.grpc_code = code
        self.message = message


class HttpContext:
    """The part of `grpc.aio.ServicerContext` the servicers and the guard use, for an HTTP call."""

    def __init__(self, authorization: str | None, timeout_s: float | None) -> None:
        self.authorization = authorization
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", authorization),) if authorization is not None else ()
        )
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.trailing: dict[str, str] = {}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing.update({str(k): str(v) for k, v in metadata})

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise HttpAbort(code, details)


def error_response(code: str, message: str, retry_after_ms: str | None = None) -> JSONResponse:
    status = STATUS[code].http
    body: dict[str, Any] = {"code": code, "status": status, "message": message}
    headers = {}
    if retry_after_ms is not None:
        body["retry_after_ms"] = int(retry_after_ms)
        headers["Retry-After"] = str(max(1, -(-int(retry_after_ms) // 1000)))
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _from_abort(exc: HttpAbort, context: HttpContext) -> JSONResponse:
    code, _ = _BY_GRPC.get(exc.grpc_code, ("internal", 500))
    return error_response(code, exc.message, context.trailing.get("retry-after-ms"))


def to_json(message: Message) -> dict[str, Any]:
    """The canonical JSON of a message with .proto field names and every field present (zeros included), so
    a client reads `"total": "0"` rather than guessing what a missing key means."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


_KIND = {
    FieldDescriptor.TYPE_STRING: "a string",
    FieldDescriptor.TYPE_BOOL: "true or false",
    FieldDescriptor.TYPE_ENUM: "an enum value name",
    FieldDescriptor.TYPE_MESSAGE: "an object",
    FieldDescriptor.TYPE_BYTES: "base64 text",
}


def _is_timestamp(fd: FieldDescriptor) -> bool:
    return fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type is not None and (
        fd.message_type.full_name == "google.protobuf.Timestamp"
    )


def _expected(fd: FieldDescriptor) -> str:
    if _is_timestamp(fd):
        return "an RFC 3339 time such as 2026-12-01T00:00:00Z"
    return _KIND.get(fd.type, "an integer (a JSON number, or a string of digits for 64-bit values)")


def _repeated(fd: FieldDescriptor) -> bool:
    return bool(getattr(fd, "is_repeated", False)) or getattr(fd, "label", None) == FieldDescriptor.LABEL_REPEATED


def _check_shape(value: Any, descriptor: Descriptor, path: str) -> None:
    """Unknown fields and wrong JSON types, named by their path, before protobuf's parser words them."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"{path or 'body'}: expected a JSON object")
    for key, item in value.items():
        fd = descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)
        where = f"{path}{key}"
        if fd is None:
            known = ", ".join(f.name for f in descriptor.fields)
            raise InvalidArgument(f"{where}: {descriptor.name} has no such field (fields: {known})")
        if item is None:
            continue
        entry = fd.message_type if fd.type == FieldDescriptor.TYPE_MESSAGE else None
        if entry is not None and entry.GetOptions().map_entry:
            if not isinstance(item, dict):
                raise InvalidArgument(f"{where}: expected an object of keys to values")
            continue
        items = item if _repeated(fd) else [item]
        if _repeated(fd) and not isinstance(item, list):
            raise InvalidArgument(f"{where}: expected a JSON array of {_expected(fd)}")
        for n, one in enumerate(items):
            at = f"{where}[{n}]" if _repeated(fd) else where
            if entry is not None and entry.full_name != "google.protobuf.Timestamp":
                _check_shape(one, entry, f"{at}.")
            elif fd.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_ENUM) or (
                entry is not None
            ):
                if not isinstance(one, str):
                    raise InvalidArgument(f"{at}: expected {_expected(fd)}")
            elif fd.type == FieldDescriptor.TYPE_BOOL:
                if not isinstance(one, bool):
                    raise InvalidArgument(f"{at}: expected {_expected(fd)}")
            elif isinstance(one, bool) or not isinstance(one, int | str):
                raise InvalidArgument(f"{at}: expected {_expected(fd)}")


def parse_request(data: Any, cls: type[Message]) -> Message:
    descriptor: Any = cls.DESCRIPTOR
    _check_shape(data, descriptor, "")
    try:
        return json_format.ParseDict(data, cls())
    except json_format.ParseError as exc:
        # Values of the right JSON type that protobuf still refuses: an integer out of range, a time that
        # is not RFC 3339, an enum name that does not exist. The parser's text names the field.
        raise InvalidArgument(f"body: {str(exc).replace('Failed to parse ', '').rstrip('.')}") from None


def _query_to_json(request: Request, descriptor: Descriptor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        fd = descriptor.fields_by_name.get(key)
        if fd is None:
            known = ", ".join(f.name for f in descriptor.fields)
            raise InvalidArgument(f"{key}: {descriptor.name} has no such field (fields: {known})")
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not _is_timestamp(fd):
            raise InvalidArgument(f"{key}: an object field; send this request as a JSON body with POST")
        converted: list[Any] = []
        for v in values:
            if fd.type == FieldDescriptor.TYPE_BOOL:
                if v not in ("true", "false"):
                    raise InvalidArgument(f"{key}: expected true or false, got {v!r}")
                converted.append(v == "true")
            elif fd.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_SINT32):
                if not v.lstrip("-").isdigit():
                    raise InvalidArgument(f"{key}: expected an integer, got {v!r}")
                converted.append(int(v))
            else:
                converted.append(v)
        if _repeated(fd):
            out[key] = converted
        elif len(converted) > 1:
            raise InvalidArgument(f"{key}: given {len(converted)} times; it takes one value")
        else:
            out[key] = converted[0]
    return out


class HttpApi:
    """The routes of every unary method (and WatchEvents as NDJSON) of the servicers the gRPC server runs."""

    def __init__(self, billing: Any, ingest: Any, guard: Guard, body_bytes_max: int) -> None:
        self._guard = guard
        self._body_max = body_bytes_max
        self._methods: dict[tuple[str, str], tuple[MethodDescriptor, Callable[..., Any], str]] = {}
        from tally.api.service import scopes

        scope_of = {**scopes(), "IngestBatch": "ingest"}
        for module, servicer in ((billing_pb2, billing), (ingest_pb2, ingest)):
            for service in module.DESCRIPTOR.services_by_name.values():
                for method in service.methods:
                    if method.client_streaming:
                        continue  # Ingest (a bidirectional stream) is gRPC only; IngestBatch is its unary form
                    self._methods[(route_segment(service.name), method.name)] = (
                        method, getattr(servicer, method.name), scope_of.get(method.name, "")
                    )  # fmt: skip
        self._openapi: bytes | None = None

    def app(self, pages: Sequence[BaseRoute] = ()) -> Starlette:
        """The API's routes under /v1, then `pages` (the console and the portal, `tally.console`)."""
        return Starlette(
            routes=[
                Route("/v1/openapi.json", self.openapi, methods=["GET"]),
                Route("/v1/{service}/{method}", self.call, methods=["GET", "POST"]),
                *pages,
            ]
        )

    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            self._openapi = resources.files("tally.v1").joinpath("openapi.json").read_bytes()
        return Response(self._openapi, media_type="application/json")

    async def call(self, request: Request) -> Response:
        key = (request.path_params["service"], request.path_params["method"])
        found = self._methods.get(key)
        if found is None:
            return error_response(
                "not_found", f"no method {key[0]}/{key[1]}; the methods are listed in GET /v1/openapi.json"
            )
        method, behavior, scope = found
        authorization = request.headers.get("authorization")
        try:
            context = HttpContext(authorization, _timeout(request))
            message = await self._request(request, method, scope)
        except TallyError as exc:
            return error_response(*outcome(exc))
        if method.server_streaming:
            return await self._stream(method, behavior, message, context)
        guarded = self._guard.unary(behavior, check_text=True)
        try:
            response = await guarded(message, context)
        except HttpAbort as exc:
            return _from_abort(exc, context)
        return JSONResponse(to_json(response))

    async def _request(self, request: Request, method: MethodDescriptor, scope: str) -> Message:
        cls = _message_class(method.input_type)
        if request.method == "GET":
            if "admin" in scope.split("|") or scope == "ingest":
                raise InvalidArgument(
                    f"{method.name} changes state: call it with POST and a JSON body (GET is for reads)"
                )
            return parse_request(_query_to_json(request, method.input_type), cls)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self._body_max:
                raise InvalidArgument(f"body: larger than {self._body_max:,} bytes (message_bytes_max)")
        if not body.strip():
            return cls()
        try:
            data = json.loads(bytes(body))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"body: not JSON ({exc}); send the request message as a JSON object") from None
        return parse_request(data, cls)

    async def _stream(
        self, method: MethodDescriptor, behavior: Callable[..., Any], message: Message, context: HttpContext
    ) -> Response:
        from tally.api.base import READ

        try:
            # Refuse a bad key or scope with its status before the stream starts; later errors end the
            # stream with one last line holding the error.
            getattr(behavior, "__self__").principal(context, READ)  # noqa: B009 (a bound method's servicer)
        except TallyError as exc:
            return error_response(*outcome(exc))
        stream = self._guard.server_stream(behavior, context.authorization)

        async def lines() -> AsyncIterator[bytes]:
            try:
                async for item in stream(message, context):
                    yield (json.dumps(to_json(item)) + "\n").encode()
            except HttpAbort as exc:
                code, status = _BY_GRPC.get(exc.grpc_code, ("internal", 500))
                yield (json.dumps({"error": {"code": code, "status": status, "message": exc.message}}) + "\n").encode()
            except asyncio.CancelledError:
                raise

        return StreamingResponse(lines(), media_type=_NDJSON)


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.wake = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the gRPC server's loop owns SIGTERM/SIGINT and stops this server itself

    async def main_loop(self) -> None:
        """uvicorn's loop, woken by `stop` instead of noticing `should_exit` on its next 100 ms tick: a stop
        (SIGTERM, and every test server's teardown) begins draining at once."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown without its fixed 100 ms pauses: stop accepting, ask each connection to finish,
        and poll every 5 ms until they and their tasks are done (within `timeout_graceful_shutdown`). A stop
        with idle keep-alive connections took 0.1 s for nothing (every HTTP test server's teardown)."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                while (state.connections or state.tasks) and not self.force_exit:
                    await asyncio.sleep(0.005)
                for server in self.servers:
                    await server.wait_closed()
        except TimeoutError:
            log.error("HTTP shutdown: %d request(s) still running past the grace period: cancelled", len(state.tasks))
            for task in state.tasks:
                task.cancel(msg="the graceful shutdown's time is up")
        if not self.force_exit:
            await self.lifespan.shutdown()


class HttpServer:
    """uvicorn serving the HTTP app on the running asyncio loop (the one the gRPC server runs on)."""

    def __init__(self, server: _Uvicorn, task: asyncio.Task[None], port: int) -> None:
        self._server = server
        self._task = task
        self.port = port

    @classmethod
    async def start(cls, app: Starlette, host: str, port: int) -> HttpServer:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it a response written as headers then body waits for the
        # client's delayed ACK (about 40 ms a request on Linux; measured in benchmarks/console.py).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise OSError(f"cannot listen for HTTP on {host}:{port} (address in use?)") from None
        sock.listen(1024)
        sock.setblocking(False)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5)
        server = _Uvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise OSError(f"the HTTP server on {host}:{port} stopped while starting")
            await asyncio.sleep(0.005)
        return cls(server, task, sock.getsockname()[1])

    async def stop(self) -> None:
        self._server.should_exit = True
        self._server.wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _timeout(request: Request) -> float | None:
    raw = request.headers.get(_TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise InvalidArgument(f"Tally-Timeout header: seconds between 0 and 3600, got {raw!r}")
    return seconds


def _message_class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


__all__ = ["HttpAbort", "HttpApi", "HttpContext", "HttpServer", "error_response", "parse_request", "to_json"]
