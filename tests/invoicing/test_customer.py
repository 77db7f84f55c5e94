"""Customers on both databases: validation, uniqueness, keyset pagination, frozen currency once subscribed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from invoicing.catalog import (
    Address,
    CustomerDefinition,
    CustomerUpdate,
    create_customer,
    get_customer,
    list_customers,
    update_customer,
)
from invoicing.subscriptions import create_subscription
from metering.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import T0, published


def test_create_and_get_round_trips_every_field(engine: Engine, tenant: TenantKey) -> None:
    d = CustomerDefinition(
        external_id="cus_9",
        name="Grace",
        currency="EUR",
        timezone="Europe/Paris",
        address=Address(line1="1 rue X", city="Paris", postal_code="75001", country="FR"),
        tax_region="FR",
        email="g@example.com",
        metadata={"tier": "gold", "crm": "42"},
    )
    created = create_customer(engine, tenant.tenant_id, d, T0)
    got = get_customer(engine, tenant.tenant_id, "cus_9")
    assert got == created
    assert (got.currency, got.timezone, got.email, got.tax_region) == ("EUR", "Europe/Paris", "g@example.com", "FR")
    assert got.address is not None and got.address.city == "Paris"
    assert got.metadata == {"crm": "42", "tier": "gold"}
    assert got.created_at == T0


def test_external_id_unique_per_tenant(engine: Engine, tenant: TenantKey) -> None:
    create_customer(engine, tenant.tenant_id, CustomerDefinition(external_id="c"), T0)
    with pytest.raises(AlreadyExists, match="'c' already exists"):
        create_customer(engine, tenant.tenant_id, CustomerDefinition(external_id="c"), T0)
    other = make_tenant(engine, "other")
    create_customer(engine, other.tenant_id, CustomerDefinition(external_id="c"), T0)  # another tenant: fine
    with pytest.raises(NotFound, match="no customer 'x'"):
        get_customer(engine, tenant.tenant_id, "x")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("currency", "XXX", "unknown currency"),
        ("timezone", "Europe/Atlantis", "unknown time zone"),
        ("email", "not-an-email", "email"),
        ("external_id", "has space", "external_id"),
    ],
)
def test_invalid_fields_are_refused(field: str, value: str, match: str) -> None:
    args = {"external_id": "ok", field: value}
    with pytest.raises(ValidationError, match=match):
        CustomerDefinition.model_validate(args)


def test_keyset_pagination_visits_every_customer_once(engine: Engine, tenant: TenantKey) -> None:
    ids = [f"cus_{i:02d}" for i in range(7)]
    for i in reversed(ids):
        create_customer(engine, tenant.tenant_id, CustomerDefinition(external_id=i), T0)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = list_customers(engine, tenant.tenant_id, after=after, limit=3)
        seen += [c.external_id for c in page.customers]
        pages += 1
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == ids and pages == 3
    with pytest.raises(InvalidArgument, match="limit"):
        list_customers(engine, tenant.tenant_id, limit=0)


def test_update_and_frozen_currency_once_subscribed(engine: Engine, tenant: TenantKey) -> None:
    create_customer(engine, tenant.tenant_id, CustomerDefinition(external_id="c", currency="USD"), T0)
    changed = update_customer(engine, tenant.tenant_id, "c", CustomerUpdate(name="New", currency="EUR"), T0)
    assert (changed.name, changed.currency) == ("New", "EUR")
    update_customer(engine, tenant.tenant_id, "c", CustomerUpdate(currency="USD"), T0)
    published(engine, tenant.tenant_id, "pro")
    create_subscription(engine, tenant.tenant_id, "c", "pro", T0)
    with pytest.raises(FailedPrecondition, match="its currency cannot change"):
        update_customer(engine, tenant.tenant_id, "c", CustomerUpdate(currency="EUR"), T0)
    with pytest.raises(FailedPrecondition, match="timezone"):
        update_customer(engine, tenant.tenant_id, "c", CustomerUpdate(timezone="Asia/Tokyo"), T0)
    assert update_customer(engine, tenant.tenant_id, "c", CustomerUpdate(email="a@b.c"), T0).email == "a@b.c"
    assert get_customer(engine, tenant.tenant_id, "c").currency == "USD"
