"""The BillingService SDK: a method for every RPC, exact arguments only, and real calls over a socket."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from sqlalchemy import Engine

from invoicing.catalog import get_customer
from metering.tenant import create_api_key
from tally.sdk import BillingClient, TallyApiError, decimal_text, plain_json, transfer
from tally.v1 import billing_pb2 as pb
from tests.conftest import ServerThread, TenantKey, make_tenant

START = datetime(2026, 1, 1, tzinfo=UTC)


def snake(name: str) -> str:
    """GetCustomer360 → get_customer_360, ListInvoices → list_invoices."""
    return re.sub(r"(?<=[a-z])(?=[A-Z0-9])|(?<=[0-9])(?=[A-Z])", "_", name).lower()


def test_every_rpc_of_the_service_has_a_method() -> None:
    service = pb.DESCRIPTOR.services_by_name["BillingService"]
    names = [m.name for m in service.methods]
    assert len(names) >= 50  # the whole contract, not an empty descriptor
    missing = [n for n in names if not callable(getattr(BillingClient, snake(n), None))]
    assert missing == [], f"BillingClient lacks methods for {missing}"
    assert snake("GetCustomer360") == "get_customer_360"


def test_the_sdk_package_exports_both_clients() -> None:
    import tally.sdk
    from tally.sdk import _billing, _ingest

    assert tally.sdk.BillingClient is _billing.BillingClient is BillingClient
    assert tally.sdk.TallyApiError is TallyApiError
    assert tally.sdk.IngestClient is _ingest.IngestClient


def test_exact_arguments_become_plain_strings_and_floats_are_refused() -> None:
    assert decimal_text(Decimal("12.50"), "amount") == "12.50"
    assert decimal_text(Decimal("1E+3"), "amount") == "1000"
    assert decimal_text(Decimal("0.000125"), "amount") == "0.000125"
    assert decimal_text(7, "amount") == "7"
    assert decimal_text("3.10", "amount") == "3.10"
    with pytest.raises(TypeError, match=r"amount must be a Decimal.*not float.*0\.1"):
        decimal_text(0.1, "amount")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not bool"):
        decimal_text(True, "amount")
    with pytest.raises(ValueError, match="finite"):
        decimal_text(Decimal("NaN"), "amount")
    price = {"model": "graduated", "tiers": [{"up_to": Decimal(10), "unit_amount": Decimal("0.50")}]}
    assert plain_json(price) == {"model": "graduated", "tiers": [{"up_to": "10", "unit_amount": "0.50"}]}
    with pytest.raises(TypeError, match=r"price\.tiers\[0\]\.unit_amount is a float"):
        plain_json({"tiers": [{"unit_amount": 0.5}]}, "price")
    assert transfer("t1", 1, 2, Decimal("2.5")).amount == "2.5"


def test_bad_arguments_fail_before_any_call() -> None:
    # Nothing listens on port 1: reaching the network would be UNAVAILABLE, not these errors.
    with BillingClient("127.0.0.1:1", "key", timeout_s=2) as client:
        with pytest.raises(TypeError, match="amount must be a Decimal"):
            client.top_up_wallet("t1", "cus_1", 1.5, "USD")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"quantities\[1\]"):
            client.simulate_price({"model": "per_unit", "unit_amount": "1"}, [1, 2.0])  # type: ignore[list-item]
        with pytest.raises(TypeError, match=r"definition\.charges\[0\]\.price\.amount_per_period is a float"):
            client.create_plan({"code": "p", "charges": [{"price": {"amount_per_period": 49.0}}]})
        with pytest.raises(ValueError, match="start is a naive datetime"):
            client.create_subscription("cus_1", "pro", start=datetime(2026, 1, 1))
        with pytest.raises(TallyApiError) as caught:
            client.get_customer("cus_1")
        assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ValueError, match="timeout_s"):
        BillingClient("127.0.0.1:1", "key", timeout_s=0)


# --- real calls ---------------------------------------------------------------------------------------------


@dataclass
class Sdk:
    engine: Engine
    tenant: TenantKey
    client: BillingClient  # tenant A, all scopes
    reader: BillingClient  # tenant A, read only
    other: BillingClient  # tenant B, all scopes


@pytest.fixture
def sdk(engine: Engine, make_server: Callable[..., ServerThread]) -> Iterator[Sdk]:
    a = make_tenant(engine, "acme")
    b = make_tenant(engine, "globex")
    _, read = create_api_key(engine, a.tenant_id, ("read",))
    server = make_server()
    clients = [BillingClient(server.target, key, timeout_s=20) for key in (a.key, read, b.key)]
    yield Sdk(engine, a, *clients)
    for client in clients:
        client.close()


def test_customers_round_trip_and_page(sdk: Sdk) -> None:
    created = sdk.client.create_customer(
        "cus_c", name="Ada Ltd", currency="EUR", timezone="Europe/Paris", address={"city": "Paris", "country": "FR"},
        email="billing@ada.example", metadata={"crm": "991"},
    )  # fmt: skip
    assert (created.external_id, created.name, created.currency, created.timezone) == (
        "cus_c", "Ada Ltd", "EUR", "Europe/Paris",
    )  # fmt: skip
    assert created.address.city == "Paris" and dict(created.metadata) == {"crm": "991"}
    stored = get_customer(sdk.engine, sdk.tenant.tenant_id, "cus_c")
    assert stored.address is not None and stored.address.country == "FR" and stored.email == "billing@ada.example"
    for external_id in ("cus_e", "cus_a", "cus_d", "cus_b"):
        sdk.client.create_customer(external_id)
    assert sdk.reader.get_customer("cus_a").name == "cus_a"  # the name defaults to the external id

    first = sdk.reader.list_customers(page_size=2)
    assert [c.external_id for c in first.customers] == ["cus_a", "cus_b"] and first.next_page_token
    every = [c.external_id for c in sdk.reader.iter_customers(page_size=2)]
    assert every == ["cus_a", "cus_b", "cus_c", "cus_d", "cus_e"]
    assert list(sdk.other.iter_customers()) == []  # another tenant sees none of them

    updated = sdk.client.update_customer("cus_c", name="Ada Lovelace Ltd", metadata={})
    assert updated.name == "Ada Lovelace Ltd" and dict(updated.metadata) == {}
    assert updated.email == "billing@ada.example"  # not in the mask: unchanged
    assert get_customer(sdk.engine, sdk.tenant.tenant_id, "cus_c").name == "Ada Lovelace Ltd"


def test_errors_become_tally_api_errors_and_change_nothing(sdk: Sdk) -> None:
    sdk.client.create_customer("cus_1", name="First")
    with pytest.raises(TallyApiError) as taken:
        sdk.client.create_customer("cus_1", name="Second")
    assert taken.value.code is grpc.StatusCode.ALREADY_EXISTS and "cus_1" in taken.value.message
    assert str(taken.value).startswith("ALREADY_EXISTS: ")
    assert get_customer(sdk.engine, sdk.tenant.tenant_id, "cus_1").name == "First"

    with pytest.raises(TallyApiError) as missing:
        sdk.client.get_customer("nobody")
    assert missing.value.code is grpc.StatusCode.NOT_FOUND and "nobody" in missing.value.message
    with pytest.raises(TallyApiError) as hidden:
        sdk.other.get_customer("cus_1")
    assert hidden.value.code is grpc.StatusCode.NOT_FOUND

    with pytest.raises(TallyApiError) as denied:
        sdk.reader.create_customer("cus_2")
    assert denied.value.code is grpc.StatusCode.PERMISSION_DENIED and "admin" in denied.value.message
    with pytest.raises(TallyApiError) as nothing:
        sdk.client.update_customer("cus_1")  # no field given: an empty mask
    assert nothing.value.code is grpc.StatusCode.INVALID_ARGUMENT and "update_mask" in nothing.value.message
    with pytest.raises(TallyApiError) as bad:
        sdk.client.create_customer("cus_3", currency="XYZ")
    assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT and "currency" in bad.value.message
    assert [c.external_id for c in sdk.client.iter_customers()] == ["cus_1"]

    with BillingClient(sdk.client.target, "not-a-key") as stranger, pytest.raises(TallyApiError) as unknown:
        stranger.list_customers()
    assert unknown.value.code is grpc.StatusCode.UNAUTHENTICATED


def test_catalog_subscriptions_and_events(sdk: Sdk) -> None:
    c = sdk.client
    meter = c.create_meter("gb_hours", name="Storage", aggregation="sum", value_scale=3, unit="GB-h")
    assert (meter.code, meter.aggregation, meter.value_scale, meter.unit) == ("gb_hours", "sum", 3, "GB-h")
    assert [m.code for m in c.iter_meters(page_size=1)] == ["api_calls", "gb_hours", "tokens"]

    definition = {
        "code": "pro", "name": "Pro", "currency": "USD", "interval": "monthly",
        "charges": [
            {"code": "base", "kind": "flat",
             "price": {"model": "flat", "amount_per_period": Decimal("49.00"), "billing": "in_advance"}},
            {"code": "calls", "kind": "usage", "meter": "api_calls",
             "price": {"model": "graduated", "tiers": [{"up_to": Decimal(1000), "unit_amount": Decimal(0)},
                                                      {"up_to": None, "unit_amount": Decimal("0.002")}]}},
        ],
    }  # fmt: skip
    draft = c.create_plan(definition)
    assert (draft.code, draft.version, draft.status) == ("pro", 1, "draft")
    published = c.publish_plan("pro")
    assert published.status == "published" and published.HasField("published_at")
    assert c.get_plan("pro").version == 1
    assert [v.status for v in c.list_plan_versions("pro")] == ["published"]
    assert [(p.code, p.published_version) for p in c.iter_plans()] == [("pro", 1)]

    c.create_customer("cus_1")
    sub = c.create_subscription("cus_1", "pro", start=START)
    assert (sub.customer, sub.plan, sub.plan_version, sub.state) == ("cus_1", "pro", 1, "active")
    assert sub.started_at.ToDatetime(tzinfo=UTC) == START
    assert [s.id for s in c.iter_subscriptions(customer="cus_1", page_size=1)] == [sub.id]
    assert c.get_subscription(sub.id).plan == "pro"

    quotes = c.simulate_price(definition["charges"][1]["price"], [Decimal(1000), 1500, "2000.5"])  # type: ignore[index]
    assert [(r.quantity, r.amount) for r in quotes.results] == [("1000", "0.00"), ("1500", "1.00"), ("2000.5", "2.00")]
    assert quotes.currency == "USD"

    # The subscription's event, streamed and listed: the same sequence, type and customer.
    events = c.watch_events(0, ["subscription."], timeout_s=10)
    first = next(events)
    events.close()
    assert (first.type, first.customer) == ("subscription.created", "cus_1")
    assert [(e.sequence, e.type) for e in c.iter_events(types=["subscription."])] == [(first.sequence, first.type)]
    with pytest.raises(TallyApiError) as closed:
        c.create_subscription("cus_1", "nope", start=START + timedelta(days=1))
    assert closed.value.code is grpc.StatusCode.NOT_FOUND and "nope" in closed.value.message


def test_verify_signature_is_the_webhook_senders_own() -> None:
    import invoicing.events._webhook as webhook
    from tally.sdk import SIGNATURE_HEADER, verify_signature

    assert SIGNATURE_HEADER == webhook.SIGNATURE_HEADER
    body = b'{"sequence":1,"type":"invoice.created"}'
    header = webhook.signature("whsec_test", body, 1_800_000_000)
    assert verify_signature("whsec_test", header, body, 1_800_000_010)
    assert not verify_signature("whsec_test", header, body + b" ", 1_800_000_010)  # another body
    assert not verify_signature("whsec_other", header, body, 1_800_000_010)  # another secret
    assert not verify_signature("whsec_test", header, body, 1_800_000_000 + 301)  # too old: a replay
    # The SDK's copy (so receivers never load the server) answers as the server's own, header by header.
    rotated = f"{header},v1={'0' * 64}"
    for h in (header, rotated, "t=1800000000", "v1=abc", "", "t=x,v1=y", header.replace("v1=", "v2=")):
        for at in (1_800_000_000, 1_800_000_300, 1_800_000_301, 1_799_999_699):
            assert verify_signature("whsec_test", h, body, at) == webhook.verify_signature("whsec_test", h, body, at)


def test_wallets_conversions_and_transfers(sdk: Sdk) -> None:
    from invoicing.ledger.ledger import Ledger

    ledger = Ledger(sdk.engine, sdk.tenant.tenant_id)
    ledger.define_points_unit("pts", 0)
    ledger.set_rate("USD", "pts", Decimal(3), valid_from=START)
    c = sdk.client
    c.create_customer("cus_w")
    topped = c.top_up_wallet("tu-1", "cus_w", Decimal("12.50"), "USD", reference="card 4242")
    assert (topped.result, topped.balance.unit, topped.balance.amount) == ("created", "USD", "12.50")
    again = c.top_up_wallet("tu-1", "cus_w", Decimal("12.50"), "USD", reference="card 4242")
    assert (again.result, again.balance.amount) == ("exists", "12.50")

    # 3 pts per USD at scale 0: of 2.50 USD only 2.00 converts exactly (to 6 pts); the 0.50 stays in cash.
    converted = c.convert_credits("cv-1", "cus_w", Decimal("2.50"), "USD", "pts")
    assert (converted.debited.amount, converted.credited.amount, converted.credited.unit) == ("2.00", "6", "pts")
    totals = {t.unit: t.balance for t in c.get_balances("cus_w").totals}
    assert totals == {"USD": "10.50", "pts": "6"}

    with pytest.raises(TallyApiError) as bad:
        c.top_up_wallet("tu-2", "cus_w", Decimal("1.005"), "USD")
    assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT and "1.005" in bad.value.message
    with pytest.raises(TallyApiError) as denied:
        sdk.reader.top_up_wallet("tu-3", "cus_w", 1, "USD")
    assert denied.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert {t.unit: t.balance for t in c.get_balances("cus_w").totals} == totals  # the failures moved nothing

    cash = next(a for a in c.get_balances("cus_w").accounts if a.unit == "USD" and a.kind == "cash")
    c.create_customer("cus_x")
    c.top_up_wallet("tu-x", "cus_x", 1, "USD")
    other = next(a for a in c.get_balances("cus_x").accounts if a.unit == "USD" and a.kind == "cash")
    results = c.create_transfers([transfer("move-1", cash.id, other.id, Decimal("0.75"), code="refund")])
    assert [(r.index, r.id, r.result) for r in results] == [(0, "move-1", "ok")]
    history = c.list_account_history(other.id)
    assert [(h.transfer_id, h.change, h.running_balance) for h in history][-1] == ("move-1", "0.75", "1.75")


def test_invoice_cycle_finalize_and_export(sdk: Sdk) -> None:
    c = sdk.client
    c.create_plan({
        "code": "flat", "currency": "USD", "interval": "monthly",
        "charges": [{"code": "fee", "kind": "flat",
                     "price": {"model": "flat", "amount_per_period": Decimal("30"), "billing": "in_advance"}}],
    })  # fmt: skip
    c.publish_plan("flat")
    c.create_customer("cus_i")
    c.create_subscription("cus_i", "flat", start=START)
    run = c.run_invoice_cycle(as_of=START + timedelta(days=1))
    assert (run.items, run.invoices_created) == (1, 1)
    assert c.run_invoice_cycle(as_of=START + timedelta(days=1)).invoices_created == 0  # idempotent

    drafts = list(c.iter_invoices(customer="cus_i", status="draft", page_size=1))
    assert [(i.total, i.currency, i.status) for i in drafts] == [("30.00", "USD", "draft")]
    final = c.finalize_invoice(drafts[0].id)
    assert (final.status, final.number, final.label) == ("finalized", 1, "INV-000001")
    assert c.get_invoice(final.id).number == 1
    doc = c.export_invoice(final.id, "pdf")
    assert doc.content.startswith(b"%PDF") and doc.content_type == "application/pdf"
    assert json.loads(c.export_invoice(final.id, "json").content)["total"] == "30.00"
    with pytest.raises(TallyApiError) as twice:
        c.finalize_invoice(final.id)
    assert twice.value.code is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(TallyApiError) as hidden:
        sdk.other.get_invoice(final.id)
    assert hidden.value.code is grpc.StatusCode.NOT_FOUND
