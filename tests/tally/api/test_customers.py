"""BillingService customers over a real server: create, get, list (paged), update with a mask."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from invoicing.catalog import get_customer
from tally.api import customers as customers_api
from tests.invoicing.conftest import published
from tests.tally.api.conftest import Api, pb


def _create(api: Api, external_id: str, **fields: Any) -> pb.Customer:
    request = pb.CreateCustomerRequest(customer=pb.Customer(external_id=external_id, **fields))
    customer: pb.Customer = api.call("CreateCustomer", request)
    return customer


def test_create_and_get(api: Api) -> None:
    before = datetime.now(UTC)
    created = _create(
        api,
        "cus_ada",
        name="Ada Ltd",
        currency="EUR",
        timezone="Europe/Paris",
        address=pb.Address(line1="1 rue de Rivoli", city="Paris", postal_code="75001", country="FR"),
        tax_region="FR",
        email="billing@ada.example",
        metadata={"crm": "991", "tier": "gold"},
    )
    assert (created.external_id, created.name, created.currency, created.timezone) == (
        "cus_ada",
        "Ada Ltd",
        "EUR",
        "Europe/Paris",
    )
    assert (created.address.city, created.address.country, created.address.postal_code) == ("Paris", "FR", "75001")
    assert (created.tax_region, created.email, dict(created.metadata)) == (
        "FR",
        "billing@ada.example",
        {"crm": "991", "tier": "gold"},
    )
    assert before - timedelta(seconds=1) <= created.created_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    got = api.call("GetCustomer", pb.GetCustomerRequest(external_id="cus_ada"), key=api.read)
    assert got == created
    stored = get_customer(api.engine, api.tenant.tenant_id, "cus_ada")
    assert stored.address is not None and stored.address.line1 == "1 rue de Rivoli"


def test_create_defaults(api: Api) -> None:
    c = _create(api, "cus_min")
    assert (c.name, c.currency, c.timezone, c.email, c.tax_region) == ("cus_min", "USD", "UTC", "", "")
    assert not c.HasField("address") and not c.metadata


CREATE_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"external_id": ""}, "customer.external_id is required"),
    ({"external_id": "has space"}, "customer.external_id"),
    ({"external_id": "c1", "currency": "XXY"}, "customer.currency: unknown currency 'XXY'"),
    ({"external_id": "c1", "timezone": "Mars/Olympus"}, "customer.timezone"),
    ({"external_id": "c1", "email": "not-an-email"}, "customer.email"),
    ({"external_id": "c1", "address": pb.Address(country="France")}, "customer.address.country"),
    ({"external_id": "c1", "metadata": {f"k{i}": "v" for i in range(51)}}, "customer.metadata"),
]


def test_create_refuses_bad_input(api: Api) -> None:
    for fields, fragment in CREATE_REFUSALS:
        err = api.fails("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(**fields)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert fragment in (err.details() or ""), (fragment, err.details())
    listed = api.call("ListCustomers", pb.ListCustomersRequest())
    assert list(listed.customers) == []


def test_create_taken_id_is_already_exists(api: Api) -> None:
    _create(api, "cus_1", name="First")
    err = api.fails("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(external_id="cus_1", name="2")))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "'cus_1' already exists" in (err.details() or "")
    assert api.call("GetCustomer", pb.GetCustomerRequest(external_id="cus_1")).name == "First"


def test_get_missing(api: Api) -> None:
    err = api.fails("GetCustomer", pb.GetCustomerRequest(external_id="nobody"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no customer 'nobody'" in (err.details() or "")
    err = api.fails("GetCustomer", pb.GetCustomerRequest())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "external_id is required" in (err.details() or "")


def test_list_pages_without_repeats_or_gaps(api: Api) -> None:
    ids = [f"cus_{i:02d}" for i in (5, 1, 4, 2, 3)]
    for external_id in ids:
        _create(api, external_id)
    seen: list[str] = []
    ahead: list[str] = []
    token = ""
    while True:
        page = api.call("ListCustomers", pb.ListCustomersRequest(page_size=2, page_token=token), key=api.read)
        assert len(page.customers) <= 2
        seen += [c.external_id for c in page.customers]
        if not page.next_page_token:
            break
        token = page.next_page_token
        # The list grows while we page: an id ahead of the cursor shows up once, one behind it never.
        ahead.append(f"cus_99_{len(seen)}")
        _create(api, ahead[-1])
        _create(api, f"cus_00_{len(seen)}")
    assert seen == sorted(ids) + ahead
    assert len(ahead) >= 2  # more than one page was read


def test_list_pages_larger_than_the_domain_reads(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API allows pages of 1,000; the domain reads at most 500 per query, so a page takes several."""
    monkeypatch.setattr(customers_api, "DOMAIN_PAGE_MAX", 2)  # the server runs in this process
    ids = [f"cus_{i}" for i in range(7)]
    for external_id in ids:
        _create(api, external_id)
    first = api.call("ListCustomers", pb.ListCustomersRequest(page_size=5))
    assert [c.external_id for c in first.customers] == ids[:5] and first.next_page_token
    rest = api.call("ListCustomers", pb.ListCustomersRequest(page_size=5, page_token=first.next_page_token))
    assert [c.external_id for c in rest.customers] == ids[5:] and rest.next_page_token == ""
    whole = api.call("ListCustomers", pb.ListCustomersRequest(page_size=1000))
    assert [c.external_id for c in whole.customers] == ids and whole.next_page_token == ""


def test_list_refuses_bad_paging(api: Api) -> None:
    err = api.fails("ListCustomers", pb.ListCustomersRequest(page_size=1001))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_size" in (err.details() or "")
    err = api.fails("ListCustomers", pb.ListCustomersRequest(page_token="!!not a token"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in (err.details() or "")


def test_update_changes_only_masked_fields(api: Api) -> None:
    _create(api, "cus_1", name="Old", email="old@x.example", metadata={"a": "1"}, tax_region="FR")
    updated = api.call(
        "UpdateCustomer",
        pb.UpdateCustomerRequest(
            external_id="cus_1",
            customer=pb.Customer(name="New", email="ignored@x.example", currency="EUR", metadata={"b": "2"}),
            update_mask=["name", "currency", "metadata"],
        ),
    )
    assert (updated.name, updated.currency, dict(updated.metadata)) == ("New", "EUR", {"b": "2"})
    assert (updated.email, updated.tax_region) == ("old@x.example", "FR")  # not in the mask
    assert api.call("GetCustomer", pb.GetCustomerRequest(external_id="cus_1")) == updated
    # Masked and empty clears: e-mail and metadata; address set, then cleared.
    with_address = api.call(
        "UpdateCustomer",
        pb.UpdateCustomerRequest(
            external_id="cus_1", customer=pb.Customer(address=pb.Address(city="Lyon")), update_mask=["address"]
        ),
    )
    assert with_address.address.city == "Lyon"
    cleared = api.call(
        "UpdateCustomer",
        pb.UpdateCustomerRequest(
            external_id="cus_1", customer=pb.Customer(), update_mask=["email", "metadata", "address"]
        ),
    )
    assert (cleared.email, dict(cleared.metadata), cleared.HasField("address")) == ("", {}, False)
    assert cleared.name == "New"


UPDATE_REFUSALS: list[tuple[list[str], pb.Customer, str]] = [
    ([], pb.Customer(name="x"), "update_mask is empty"),
    (["name", "nickname"], pb.Customer(name="x"), "update_mask[1]: 'nickname' is not a field"),
    (["external_id"], pb.Customer(external_id="cus_1"), "update_mask[0]: 'external_id'"),
    (["name"], pb.Customer(external_id="cus_2", name="x"), "customer.external_id: 'cus_2' differs"),
    (["currency"], pb.Customer(currency="NOPE"), "customer.currency"),
    (["timezone"], pb.Customer(), "customer.timezone"),
    (["email"], pb.Customer(email="a b"), "customer.email"),
    (["address"], pb.Customer(address=pb.Address(country="fr")), "customer.address.country"),
]


def test_update_refuses_bad_input_and_changes_nothing(api: Api) -> None:
    original = _create(api, "cus_1", name="Keep", email="keep@x.example")
    for mask, customer, fragment in UPDATE_REFUSALS:
        request = pb.UpdateCustomerRequest(external_id="cus_1", customer=customer, update_mask=mask)
        err = api.fails("UpdateCustomer", request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, mask
        assert fragment in (err.details() or ""), (fragment, err.details())
        assert api.call("GetCustomer", pb.GetCustomerRequest(external_id="cus_1")) == original


def test_update_missing_and_frozen(api: Api) -> None:
    err = api.fails(
        "UpdateCustomer",
        pb.UpdateCustomerRequest(external_id="ghost", customer=pb.Customer(name="x"), update_mask=["name"]),
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no customer 'ghost'" in (err.details() or "")
    # A subscribed customer's currency is frozen: FAILED_PRECONDITION, nothing changes.
    original = _create(api, "cus_1")
    published(api.engine, api.tenant.tenant_id, "pro")
    api.call("CreateSubscription", pb.CreateSubscriptionRequest(customer="cus_1", plan="pro"))
    err = api.fails(
        "UpdateCustomer",
        pb.UpdateCustomerRequest(
            external_id="cus_1", customer=pb.Customer(currency="EUR", name="Renamed"), update_mask=["currency", "name"]
        ),
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "currency cannot change" in (err.details() or "")
    assert api.call("GetCustomer", pb.GetCustomerRequest(external_id="cus_1")) == original
