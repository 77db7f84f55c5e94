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


def test_periodic_worker_survives_a_failing_pass_and_reports_results() -> None:
    """The background jobs (alert evaluator, subscription scheduler) must outlive a database hiccup."""
    import threading
    from datetime import datetime

    from tally.api.base import Periodic

    calls: list[datetime] = []
    results: list[int] = []
    done = threading.Event()

    def job(now: datetime) -> int:
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return len(calls)

    def on_result(n: int) -> None:
        results.append(n)
        if n >= 3:
            done.set()

    worker = Periodic("test-periodic", 0.01, job, on_result)
    worker.start()
    assert done.wait(10)
    worker.stop()
    assert results[:2] == [2, 3] and all(c.tzinfo is not None for c in calls)


def test_changes_need_admin_and_reads_need_read() -> None:
    """The scope follows from what an RPC does: a verb that changes state needs admin."""
    changing = ("Create", "Update", "Publish", "Change", "Pause", "Resume", "Cancel", "Finalize", "Mark", "Void",
                "Run", "TopUp", "Convert", "Disable", "Replay", "Delete", "Withdraw", "Record", "Define", "Set",
                "Accrue", "Bulk", "Redeem", "Apply", "Remove", "Open", "Resolve", "Revoke")  # fmt: skip
    reading = ("Get", "List", "Query", "Simulate", "Watch", "Export")
    for name, scope in scopes().items():
        if name in ("CheckEntitlement", "ListEntitlements"):  # product services gate with ingest keys
            assert scope == "ingest|read"
        elif name.startswith(changing):
            assert scope == "admin", name
        else:
            assert name.startswith(reading) and scope == "read", (name, scope)
