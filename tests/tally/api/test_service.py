"""The service as a whole: every RPC declares a scope, and the server answers on a real socket."""

from __future__ import annotations

import grpc

from tally.api.service import scopes
from tests.tally.api.conftest import Api, pb


def test_every_rpc_is_implemented_with_a_scope() -> None:
    missing = sorted(name for name, scope in scopes().items() if not scope)
    assert not missing, f"RPCs without an implementation or a scope: {missing}"


def test_unknown_key_is_unauthenticated(api: Api) -> None:
    err = api.fails("ListCustomers", pb.ListCustomersRequest(), key="tly_nope")
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
