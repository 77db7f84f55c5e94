"""Fixtures for BillingService tests: a real server on a loopback port, two tenants, keys per scope.

`api.call("GetCustomer", request)` calls as tenant A's admin key; `key=` picks another key
(`api.read`, `api.ingest`, `api.other` = tenant B's admin key). `api.fails(...)` expects an error
and returns it, so a test can assert the status code and the message.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, message_factory
from sqlalchemy import Engine

from metering.tenant import create_api_key
from tally.errors import STATUS
from tally.v1 import billing_pb2 as pb
from tally.v1 import billing_pb2_grpc as pb_grpc
from tests.conftest import ServerThread, TenantKey, make_tenant


@dataclass
class Api:
    engine: Engine
    server: ServerThread
    channel: grpc.Channel
    stub: pb_grpc.BillingServiceStub
    tenant: TenantKey  # tenant A, all scopes
    read: str  # tenant A, read only
    ingest: str  # tenant A, ingest only
    other: TenantKey  # tenant B, all scopes

    @property
    def admin(self) -> str:
        return self.tenant.key

    def call(self, method: str, request: Any, key: str | None = None, timeout: float = 30) -> Any:
        fn = getattr(self.stub, method)
        return fn(request, metadata=(("authorization", f"Bearer {key or self.admin}"),), timeout=timeout)

    def fails(self, method: str, request: Any, key: str | None = None) -> grpc.RpcError:
        try:
            self.call(method, request, key)
        except grpc.RpcError as exc:
            return exc
        raise AssertionError(f"{method} succeeded but was expected to fail")

    def http_call(self, method: str, request: Any, key: str | None = None, stream_s: float = 1.5) -> Any:
        """The same call as JSON over HTTP (POST /v1/billing/<method>): the response parsed back into its
        message, or an `HttpRpcError` that answers `code()` and `details()` like a gRPC error."""
        descriptor = pb.DESCRIPTOR.services_by_name["BillingService"].methods_by_name[method]
        body = json_format.MessageToDict(request, preserving_proto_field_name=True)
        url = f"{self.server.http_url}/v1/billing/{method}"
        headers = {"Authorization": f"Bearer {key or self.admin}"}
        out_cls = message_factory.GetMessageClass(descriptor.output_type)
        if descriptor.server_streaming:
            got: list[Any] = []
            timeout = httpx.Timeout(10, read=stream_s)  # a quiet stream ends the read after stream_s
            with httpx.Client(timeout=timeout) as client, client.stream("POST", url, json=body, headers=headers) as r:
                if r.status_code != 200:
                    r.read()
                    raise HttpRpcError(r.status_code, r.json())
                with contextlib.suppress(httpx.ReadTimeout):
                    for line in r.iter_lines():
                        data = json.loads(line) if line.strip() else None
                        if data is not None and "error" in data:
                            raise HttpRpcError(data["error"]["status"], data)
                        if data is not None:
                            got.append(json_format.ParseDict(data, out_cls()))
            return got
        r = httpx.post(url, json=body, headers=headers, timeout=30)
        if r.status_code != 200:
            raise HttpRpcError(r.status_code, r.json())
        return json_format.ParseDict(r.json(), out_cls())


class HttpRpcError(grpc.RpcError):
    """An HTTP refusal seen through gRPC's error interface, so one table of checks serves both edges."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self._code = getattr(grpc.StatusCode, body["error"]["code"].upper())
        assert STATUS[body["error"]["code"]].http == status == body["error"]["status"], (status, body)

    def code(self) -> grpc.StatusCode:
        return self._code  # type: ignore[no-any-return]

    def details(self) -> str:
        return str(self.body["error"]["message"])


@pytest.fixture
def api(engine: Engine, make_server: Callable[..., ServerThread]) -> Iterator[Api]:
    a = make_tenant(engine, "acme")
    b = make_tenant(engine, "globex")
    _, read = create_api_key(engine, a.tenant_id, ("read",))
    _, ingest = create_api_key(engine, a.tenant_id, ("ingest",))
    server = make_server(http=True)
    channel = grpc.insecure_channel(server.target)
    yield Api(engine, server, channel, pb_grpc.BillingServiceStub(channel), a, read, ingest, b)  # type: ignore[no-untyped-call]
    channel.close()


__all__ = ["Api", "HttpRpcError", "pb"]
