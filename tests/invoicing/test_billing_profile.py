"""The tenant's billing profile (the seller) and the buyer's tax id and grouping, on both databases."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import Engine

from invoicing.catalog import (
    Address,
    BillingProfile,
    CustomerDefinition,
    CustomerUpdate,
    create_customer,
    get_billing_profile,
    get_customer,
    set_billing_profile,
    update_customer,
)
from metering.errors import InvalidArgument
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import T0


def image(fmt: str, size: tuple[int, int] = (120, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


def test_a_tenant_without_a_profile_gets_the_defaults(engine: Engine, tenant: TenantKey) -> None:
    p = get_billing_profile(engine, tenant.tenant_id)
    assert p == BillingProfile()
    assert (p.legal_name, p.tax_id, p.payment_terms_days, p.issue_zero_total, p.invoice_grouping) == (
        "", "", 30, False, "customer"
    )  # fmt: skip
    assert p.terms == "Net 30" and p.logo_type is None and p.updated_at is None
    with engine.connect() as conn:  # the invoice run reads it inside its own transaction
        assert get_billing_profile(conn, tenant.tenant_id) == BillingProfile()


def test_round_trip_replace_and_change(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    logo = image("PNG")
    full = BillingProfile(
        legal_name="  Acme Metering SAS ", address=Address(line1="3 avenue de l'Opéra", city="Paris", country="FR"),
        tax_id="FR40123456789", payment_instructions="IBAN FR76 3000 6000\nBIC AGRIFRPP\n", payment_terms_days=0,
        logo=logo, issue_zero_total=True, invoice_grouping="subscription",
    )  # fmt: skip
    stored = set_billing_profile(engine, tid, full, T0)
    assert stored.legal_name == "Acme Metering SAS"  # trimmed
    assert stored.payment_instructions == "IBAN FR76 3000 6000\nBIC AGRIFRPP"  # line breaks kept inside
    assert stored.logo == logo and stored.logo_type == "png" and stored.terms == "Due on receipt"
    assert stored.address == full.address and stored.updated_at == T0
    assert get_billing_profile(engine, tid) == stored
    # A mapping changes only the fields it names.
    later = T0 + timedelta(days=1)
    changed = set_billing_profile(engine, tid, {"payment_terms_days": 45, "logo": image("JPEG")}, later)
    assert (changed.payment_terms_days, changed.logo_type, changed.legal_name) == (45, "jpeg", "Acme Metering SAS")
    assert changed.updated_at == later and changed.invoice_grouping == "subscription"
    # Empty logo bytes and an empty address clear them.
    cleared = set_billing_profile(engine, tid, {"logo": b"", "address": Address()}, later)
    assert cleared.logo is None and cleared.address is None
    # A whole profile replaces everything.
    assert set_billing_profile(engine, tid, BillingProfile(), later) == BillingProfile(updated_at=later)
    # Tenants do not share a profile.
    other = make_tenant(engine, "globex")
    assert get_billing_profile(engine, other.tenant_id) == BillingProfile()


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"legal_name": "x" * 257}, ("legal_name", "257 characters", "at most 256")),
        ({"legal_name": "Acme\nLtd"}, ("legal_name", "line breaks")),
        ({"legal_name": 42}, ("legal_name must be text",)),
        ({"tax_id": "X" * 65}, ("tax_id", "at most 64")),
        ({"tax_id": "FR\x07"}, ("tax_id", "control")),
        ({"payment_instructions": "p" * 2001}, ("payment_instructions", "at most 2000")),
        ({"payment_instructions": "pay\x00"}, ("payment_instructions", "line breaks are fine")),
        ({"payment_terms_days": 366}, ("payment_terms_days is 366", "0 (due on receipt) to 365")),
        ({"payment_terms_days": -1}, ("payment_terms_days is -1",)),
        ({"payment_terms_days": True}, ("payment_terms_days must be a whole number",)),
        ({"payment_terms_days": 30.0}, ("payment_terms_days must be a whole number",)),
        ({"issue_zero_total": "yes"}, ("issue_zero_total must be true or false",)),
        ({"invoice_grouping": "plan"}, ("invoice_grouping 'plan'", "'customer'", "'subscription'")),
        ({"logo": b"GIF89a" + b"\x00" * 10}, ("logo is not a PNG or JPEG",)),
        ({"logo": b"\xff\xd8\xff" + b"\x00" * 10}, ("logo looks like JPEG but cannot be read",)),
        ({"logo": b"\x89PNG\r\n\x1a\n" + b"\x00" * (256 * 1024)}, ("logo is 262,152 bytes", "256 KiB")),
        ({"logo": "logo.png"}, ("logo must be the bytes",)),
        ({"address": {"country": "France"}}, ("address.country",)),
        ({"address": "Paris"}, ("address must be an object",)),
        ({"colour": "red"}, ("unknown billing profile field 'colour'", "legal_name")),
    ],
)
def test_invalid_values_name_the_field_and_store_nothing(
    engine: Engine, tenant: TenantKey, changes: dict[str, object], needles: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidArgument) as err:
        set_billing_profile(engine, tenant.tenant_id, changes, T0)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))
    assert get_billing_profile(engine, tenant.tenant_id).updated_at is None


def test_logo_of_exactly_256_kib_is_accepted(engine: Engine, tenant: TenantKey) -> None:
    """The bound is inclusive; a real PNG padded to the limit (trailing bytes after IEND still decode)."""
    logo = image("PNG")
    logo += b"\x00" * (256 * 1024 - len(logo))
    assert set_billing_profile(engine, tenant.tenant_id, {"logo": logo}, T0).logo == logo


def test_customer_tax_id_and_invoice_grouping(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    c = create_customer(engine, tid, CustomerDefinition(external_id="cus_1", tax_id=" FR98765432101 "), T0)
    assert (c.tax_id, c.invoice_grouping) == ("FR98765432101", None)
    c = update_customer(engine, tid, "cus_1", CustomerUpdate(invoice_grouping="subscription"), T0)
    assert c.invoice_grouping == "subscription" and c.tax_id == "FR98765432101"
    c = update_customer(engine, tid, "cus_1", CustomerUpdate(tax_id=""), T0)
    assert c.tax_id == "" and c.invoice_grouping == "subscription"  # None leaves a field as it is
    c = update_customer(engine, tid, "cus_1", CustomerUpdate(invoice_grouping=""), T0)
    assert c.invoice_grouping is None  # "" follows the tenant's profile again
    assert get_customer(engine, tid, "cus_1") == c
    for bad in ({"tax_id": "X" * 65}, {"tax_id": "FR\n1"}, {"invoice_grouping": "plan"}):
        with pytest.raises(ValidationError) as err:
            CustomerDefinition(external_id="cus_2", **bad)  # type: ignore[arg-type]
        assert next(iter(bad)) in str(err.value)
