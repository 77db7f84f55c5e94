"""Fixtures for BillingService tests: a real server on a loopback port, two tenants, keys per scope.

`api.call("GetCustomer", request)` calls as tenant A's admin key; `key=` picks another key
(`api.read`, `api.ingest`, `api.other` = tenant B's admin key). `api.fails(...)` expects an error
and returns it, so a test can assert the status code and the message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine

from metering.tenant import create_api_key
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


@pytest.fixture
def api(engine: Engine, make_server: Callable[..., ServerThread]) -> Iterator[Api]:
    a = make_tenant(engine, "acme")
    b = make_tenant(engine, "globex")
    _, read = create_api_key(engine, a.tenant_id, ("read",))
    _, ingest = create_api_key(engine, a.tenant_id, ("ingest",))
    server = make_server()
    channel = grpc.insecure_channel(server.target)
    yield Api(engine, server, channel, pb_grpc.BillingServiceStub(channel), a, read, ingest, b)  # type: ignore[no-untyped-call]
    channel.close()


__all__ = ["Api", "pb"]
