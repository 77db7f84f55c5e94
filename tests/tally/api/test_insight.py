"""GetCustomer360 and GetPortfolio over gRPC: real figures, bad input, tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.insight import STAGES
from invoicing.ledger import Ledger
from invoicing.subscriptions import create_subscription
from tests.invoicing.conftest import published, write_events
from tests.tally.api.conftest import Api, pb


@pytest.fixture
def ada(api: Api) -> str:
    t = api.tenant.tenant_id
    now = datetime.now(UTC)
    start = now - timedelta(days=40)
    create_customer(api.engine, t, CustomerDefinition(external_id="ada", timezone="UTC"), start)
    create_customer(api.engine, t, CustomerDefinition(external_id="bob", timezone="UTC"), now)
    published(api.engine, t, "pro")
    create_subscription(api.engine, t, "ada", "pro", start)
    write_events(api.engine, t, [(f"e{k}", "ada", "api_calls", now - timedelta(seconds=2), 1, None) for k in range(5)])
    led = Ledger(api.engine, t)
    assert led.top_up("t1", "ada", led.amount("15", "USD"), "USD").ok
    return "ada"


def test_customer_360(api: Api, ada: str) -> None:
    c = api.call("GetCustomer360", pb.GetCustomer360Request(external_id=ada), key=api.read)
    assert c.customer.external_id == "ada" and c.stage in STAGES and c.stage_reason
    assert [(s.plan, s.state) for s in c.subscriptions] == [("pro", "active")]
    assert c.period_start.ToDatetime(tzinfo=UTC) <= datetime.now(UTC) < c.period_end.ToDatetime(tzinfo=UTC)
    assert [(u.meter, u.quantity) for u in c.usage] == [("api_calls", "5")]
    assert c.spend_so_far.unit == "USD" and c.spend_so_far.amount != ""
    assert [(b.unit, b.balance, b.available) for b in c.balances] == [("USD", "15.00", "15.00")]
    assert list(c.open_invoices) == [] and list(c.past_invoices) == []


def test_customer_360_errors(api: Api, ada: str) -> None:
    err = api.fails("GetCustomer360", pb.GetCustomer360Request())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "external_id is required" in (err.details() or "")
    err = api.fails("GetCustomer360", pb.GetCustomer360Request(external_id="ghost"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "ghost" in (err.details() or "")
    err = api.fails("GetCustomer360", pb.GetCustomer360Request(external_id=ada), key=api.other.key)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = api.fails("GetCustomer360", pb.GetCustomer360Request(external_id=ada), key=api.ingest)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_portfolio(api: Api, ada: str) -> None:
    p = api.call("GetPortfolio", pb.GetPortfolioRequest(), key=api.read)
    assert [s.stage for s in p.stages] == list(STAGES)
    assert p.customers == 2 == sum(s.customers for s in p.stages)
    new = next(s for s in p.stages if s.stage == "new")
    assert "bob" in new.sample_customers  # created today, not subscribed yet
    other = api.call("GetPortfolio", pb.GetPortfolioRequest(), key=api.other.key)
    assert other.customers == 0 and all(s.customers == 0 for s in other.stages)
