"""The billing profile over a real server (GetBillingProfile, UpdateBillingProfile), the buyer's tax id and
grouping on customers, and the Invoice fields documents need (issue, due and paid dates, amounts)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import grpc
import pytest
from PIL import Image

from invoicing.catalog import get_billing_profile
from invoicing.documents import finalize_invoice, list_invoices, run_cycle
from invoicing.subscriptions import create_subscription
from tests.invoicing.conftest import published
from tests.tally.api.conftest import Api, pb

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (60, 20), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def update(api: Api, mask: list[str], key: str | None = None, **fields: object) -> pb.BillingProfile:
    request = pb.UpdateBillingProfileRequest(profile=pb.BillingProfile(**fields), update_mask=mask)  # type: ignore[arg-type]
    result: pb.BillingProfile = api.call("UpdateBillingProfile", request, key)
    return result


def invalid(api: Api, mask: list[str], **fields: object) -> str:
    request = pb.UpdateBillingProfileRequest(profile=pb.BillingProfile(**fields), update_mask=mask)  # type: ignore[arg-type]
    err = api.fails("UpdateBillingProfile", request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    return err.details() or ""


def test_defaults_until_set_then_round_trip(api: Api) -> None:
    got = api.call("GetBillingProfile", pb.GetBillingProfileRequest(), key=api.read)
    assert (got.legal_name, got.payment_terms_days, got.invoice_grouping, got.issue_zero_total) == (
        "", 30, "customer", False
    )  # fmt: skip
    assert not got.HasField("updated_at") and not got.HasField("address") and got.logo == b""
    logo = png()
    set_ = update(
        api,
        ["legal_name", "address", "tax_id", "payment_instructions", "payment_terms_days", "logo",
         "issue_zero_total", "invoice_grouping"],
        legal_name="Acme Metering SAS", address=pb.Address(line1="3 avenue de l'Opéra", city="Paris", country="FR"),
        tax_id="FR40123456789", payment_instructions="IBAN FR76 3000 6000\nBIC AGRIFRPP", payment_terms_days=0,
        logo=logo, issue_zero_total=True, invoice_grouping="subscription",
    )  # fmt: skip
    assert (set_.legal_name, set_.tax_id, set_.payment_terms_days, set_.logo_type) == (
        "Acme Metering SAS", "FR40123456789", 0, "png"
    )  # fmt: skip
    assert set_.logo == logo and set_.issue_zero_total and set_.invoice_grouping == "subscription"
    got = api.call("GetBillingProfile", pb.GetBillingProfileRequest(), key=api.read)
    assert got == set_
    without = api.call("GetBillingProfile", pb.GetBillingProfileRequest(omit_logo=True))
    assert without.logo == b"" and without.logo_type == "png"
    stored = get_billing_profile(api.engine, api.tenant.tenant_id)
    assert stored.terms == "Due on receipt" and stored.address is not None and stored.address.city == "Paris"
    # A mask changes only what it names; an unset address and empty logo bytes clear them.
    changed = update(api, ["payment_terms_days", "address", "logo"], payment_terms_days=45)
    assert (changed.payment_terms_days, changed.legal_name, changed.logo_type) == (45, "Acme Metering SAS", "")
    assert not changed.HasField("address")
    # The other tenant never sees it.
    other = api.call("GetBillingProfile", pb.GetBillingProfileRequest(), key=api.other.key)
    assert other.legal_name == "" and other.payment_terms_days == 30


def test_read_key_cannot_update(api: Api) -> None:
    request = pb.UpdateBillingProfileRequest(profile=pb.BillingProfile(tax_id="X"), update_mask=["tax_id"])
    err = api.fails("UpdateBillingProfile", request, key=api.read)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "'admin'" in (err.details() or "")


@pytest.mark.parametrize(
    ("mask", "fields", "needles"),
    [
        ([], {"tax_id": "X"}, ("update_mask is empty", "legal_name")),
        (["colour"], {}, ("update_mask[0]", "'colour'", "invoice_grouping")),
        (["payment_terms_days"], {"payment_terms_days": 400}, ("profile.payment_terms_days", "400", "365")),
        (["payment_terms_days"], {"payment_terms_days": -1}, ("profile.payment_terms_days", "0 (due on receipt)")),
        (["legal_name"], {"legal_name": "x" * 257}, ("profile.legal_name", "257 characters", "256")),
        (["legal_name"], {"legal_name": "Acme\nLtd"}, ("profile.legal_name", "line breaks")),
        (["tax_id"], {"tax_id": "FR" * 40}, ("profile.tax_id", "at most 64")),
        (["payment_instructions"], {"payment_instructions": "p" * 2001}, ("profile.payment_instructions", "2000")),
        (["payment_instructions"], {"payment_instructions": "IBAN\x00"}, ("profile.payment_instructions",)),
        (["invoice_grouping"], {"invoice_grouping": "plan"}, ("profile.invoice_grouping", "'plan'", "'subscription'")),
        (["logo"], {"logo": b"GIF89a" + b"\x00" * 20}, ("profile.logo", "not a PNG or JPEG")),
        (["logo"], {"logo": b"\x89PNG\r\n\x1a\n" + b"\x00" * 20}, ("profile.logo", "cannot be read")),
        (["logo"], {"logo": b"\x89PNG\r\n\x1a\n" + b"\x00" * (256 * 1024)}, ("profile.logo", "256 KiB")),
        (["address"], {"address": pb.Address(country="France")}, ("profile.address.country",)),
    ],
)
def test_bad_input_names_the_field(
    api: Api, mask: list[str], fields: dict[str, object], needles: tuple[str, ...]
) -> None:
    message = invalid(api, mask, **fields)
    for needle in needles:
        assert needle in message, (needle, message)
    assert get_billing_profile(api.engine, api.tenant.tenant_id).updated_at is None  # nothing was stored


def test_customer_tax_id_and_grouping(api: Api) -> None:
    created = api.call("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(
        external_id="cus_tax", name="Ada", tax_id="FR98765432101", invoice_grouping="subscription")))  # fmt: skip
    assert (created.tax_id, created.invoice_grouping) == ("FR98765432101", "subscription")
    # "" follows the tenant's profile again; the mask makes clearing explicit.
    request = pb.UpdateCustomerRequest(external_id="cus_tax", customer=pb.Customer(), update_mask=["invoice_grouping"])
    assert api.call("UpdateCustomer", request).invoice_grouping == ""
    request = pb.UpdateCustomerRequest(
        external_id="cus_tax", customer=pb.Customer(tax_id="DE123456789"), update_mask=["tax_id"]
    )
    assert api.call("UpdateCustomer", request).tax_id == "DE123456789"
    for customer, field in (
        (pb.Customer(external_id="c1", tax_id="X" * 65), "customer.tax_id"),
        (pb.Customer(external_id="c2", tax_id="FR\t1"), "customer.tax_id"),
        (pb.Customer(external_id="c3", invoice_grouping="plan"), "customer.invoice_grouping"),
    ):
        err = api.fails("CreateCustomer", pb.CreateCustomerRequest(customer=customer))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field in (err.details() or ""), err.details()


def test_invoice_carries_issue_due_and_paid_dates_and_amounts(api: Api) -> None:
    engine, tid = api.engine, api.tenant.tenant_id
    api.call("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(external_id="cus_1")))
    update(api, ["payment_terms_days"], payment_terms_days=14)
    published(engine, tid, "pro")
    create_subscription(engine, tid, "cus_1", "pro", T0)
    run_cycle(engine, tid, T0)
    (inv,) = list_invoices(engine, tid)
    draft = api.call("GetInvoice", pb.GetInvoiceRequest(id=inv.id or 0))
    assert draft.customer == "cus_1" and not draft.HasField("issued_at") and not draft.HasField("payment_due_at")
    assert (draft.amount_paid, draft.amount_due) == ("0.00", "0.00")
    issued_at = datetime(2026, 1, 2, 9, tzinfo=UTC)
    done = finalize_invoice(engine, tid, inv.id or 0, issued_at)
    got = api.call("GetInvoice", pb.GetInvoiceRequest(id=inv.id or 0))
    assert got.issued_at.ToDatetime(tzinfo=UTC) == issued_at
    if done.payment_due_at is not None:  # the invoice lifecycle sets it from the profile's terms
        assert got.payment_due_at.ToDatetime(tzinfo=UTC) == done.payment_due_at
    assert got.amount_due == str(done.money(done.amount_due)) and not got.HasField("paid_at")
    exported = api.call("ExportInvoice", pb.ExportInvoiceRequest(id=inv.id or 0, format="csv")).content.decode()
    header, row = exported.splitlines()[:2]
    assert header.startswith("invoice,label,kind,status,customer,customer_name")
    assert ",cus_1,cus_1," in row and "2026-01-02T09:00:00+00:00" in row


def test_sdk_reads_and_changes_the_profile(api: Api) -> None:
    from tally.sdk import BillingClient, TallyApiError

    with BillingClient(api.server.target, api.admin) as client:
        assert client.get_billing_profile().payment_terms_days == 30
        got = client.update_billing_profile(
            legal_name="Acme Ltd", address={"city": "London", "country": "GB"}, payment_terms_days=0, logo=png()
        )
        assert (got.legal_name, got.address.city, got.payment_terms_days, got.logo_type) == (
            "Acme Ltd",
            "London",
            0,
            "png",
        )
        cleared = client.update_billing_profile(clear_address=True, logo=b"")
        assert not cleared.HasField("address") and cleared.logo_type == "" and cleared.legal_name == "Acme Ltd"
        assert client.get_billing_profile(omit_logo=True).legal_name == "Acme Ltd"
        c = client.create_customer("cus_sdk", tax_id="GB123", invoice_grouping="subscription")
        assert (c.tax_id, c.invoice_grouping) == ("GB123", "subscription")
        assert client.update_customer("cus_sdk", invoice_grouping="").invoice_grouping == ""
        with pytest.raises(TallyApiError) as err:
            client.update_billing_profile(invoice_grouping="plan")
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "profile.invoice_grouping" in err.value.message
