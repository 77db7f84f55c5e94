"""GetRevenueLeakage over a real socket: every category, bounded rows, precise errors."""

from __future__ import annotations

from datetime import datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from tests.invoicing.test_leakage import FEB, T0, _world
from tests.tally.api.conftest import Api, pb


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def test_revenue_leakage_by_category(api: Api) -> None:
    _world(api.engine, api.tenant)
    got = api.call("GetRevenueLeakage", pb.GetRevenueLeakageRequest(start=_ts(T0), end=_ts(FEB)), api.read)
    assert [(c.category, c.events, c.customers, list(c.meters)) for c in got.categories] == [
        ("unknown_customer", 3, 1, ["api_calls"]),
        ("unpriced_meter", 1, 1, ["gpu"]),
        ("no_subscription", 13, 2, ["api_calls"]),
        ("not_in_plan", 2, 1, ["tokens"]),
    ]
    assert (got.unbilled_events, got.counted_events, got.rows_total) == (19, 31, 5)
    assert [(r.category, r.customer, r.meter, r.events, r.quantity) for r in got.rows][-1] == (
        "not_in_plan", "cus_sub", "tokens", 2, "3.75"
    )  # fmt: skip
    assert got.rows[1].quantity == ""  # a max meter has no summed quantity
    capped = api.call("GetRevenueLeakage", pb.GetRevenueLeakageRequest(start=_ts(T0), end=_ts(FEB), limit=2))
    assert len(capped.rows) == 2 and capped.rows_total == 5


def test_revenue_leakage_refuses_bad_windows(api: Api) -> None:
    for request, message in [
        (pb.GetRevenueLeakageRequest(start=_ts(T0)), "start and end are required"),
        (pb.GetRevenueLeakageRequest(start=_ts(T0), end=_ts(T0 + timedelta(days=367))), "at most 366 days"),
        (pb.GetRevenueLeakageRequest(start=_ts(FEB), end=_ts(T0)), "must be after"),
        (pb.GetRevenueLeakageRequest(start=_ts(T0 + timedelta(minutes=1)), end=_ts(FEB)), "15-minute boundary"),
        (pb.GetRevenueLeakageRequest(start=_ts(T0), end=_ts(FEB), limit=-1), "limit must be 0..1000"),
    ]:
        err = api.fails("GetRevenueLeakage", request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert message in (err.details() or ""), err.details()
