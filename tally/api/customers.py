"""Customers: create, get, list, update.

Proto3 cannot tell an empty string from an unset one, so creation treats "" as "use the default"
(USD, UTC, the external id as name), and updates say what they change with `update_mask` instead of
guessing from emptiness: a mask is the only way to clear the e-mail or empty the metadata.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from invoicing.catalog import LIST_LIMIT_MAX as DOMAIN_PAGE_MAX
from invoicing.catalog import (
    Address,
    CustomerDefinition,
    CustomerUpdate,
    create_customer,
    get_customer,
    list_customers,
    update_customer,
)
from metering.errors import InvalidArgument
from metering.tenant import Principal
from tally.api.base import (
    ADMIN,
    READ,
    ApiBase,
    encode_token,
    gather_pages,
    now,
    page_size,
    required,
    rpc,
    str_token,
)
from tally.api.convert import customer_pb, validation_error
from tally.v1 import billing_pb2 as pb

#: The fields UpdateCustomer can change, as named in `update_mask`.
UPDATABLE = (
    "name", "currency", "timezone", "address", "tax_region", "email", "metadata", "tax_id", "invoice_grouping",
)  # fmt: skip


def _address(message: pb.Customer) -> Address | None:
    if not message.HasField("address"):
        return None
    a = message.address
    try:
        return Address(
            line1=a.line1, line2=a.line2, city=a.city, region=a.region, postal_code=a.postal_code, country=a.country
        )
    except ValidationError as exc:
        raise validation_error(exc, "customer.address") from None


def _definition(message: pb.Customer) -> CustomerDefinition:
    values: dict[str, Any] = {
        "external_id": required(message.external_id, "customer.external_id"),
        "name": message.name,
        "address": _address(message),
        "tax_region": message.tax_region,
        "email": message.email,
        "metadata": dict(message.metadata),
        "tax_id": message.tax_id,
        "invoice_grouping": message.invoice_grouping or None,
    }
    if message.currency:
        values["currency"] = message.currency
    if message.timezone:
        values["timezone"] = message.timezone
    try:
        return CustomerDefinition(**values)
    except ValidationError as exc:
        raise validation_error(exc, "customer") from None


def _update(request: pb.UpdateCustomerRequest) -> CustomerUpdate:
    if not request.update_mask:
        raise InvalidArgument(f"update_mask is empty: list the fields to change ({', '.join(UPDATABLE)})")
    message = request.customer
    if message.external_id and message.external_id != request.external_id:
        raise InvalidArgument(
            f"customer.external_id: {message.external_id!r} differs from external_id {request.external_id!r}; "
            "an external id cannot change (create a new customer instead)"
        )
    values: dict[str, Any] = {}
    for i, name in enumerate(request.update_mask):
        if name not in UPDATABLE:
            raise InvalidArgument(
                f"update_mask[{i}]: {name!r} is not a field that can change; use {', '.join(UPDATABLE)}"
            )
        if name == "address":
            # Unset clears it: an all-empty address is what "no address" is stored as once one was set.
            values[name] = _address(message) or Address()
        elif name == "metadata":
            values[name] = dict(message.metadata)
        else:
            values[name] = getattr(message, name)
    try:
        return CustomerUpdate(**values)
    except ValidationError as exc:
        raise validation_error(exc, "customer") from None


class CustomerRpcs(ApiBase):
    @rpc(ADMIN)
    def CreateCustomer(self, principal: Principal, request: pb.CreateCustomerRequest) -> pb.Customer:
        definition = _definition(request.customer)
        return customer_pb(create_customer(self.engine, principal.tenant_id, definition, now()))

    @rpc(READ)
    def GetCustomer(self, principal: Principal, request: pb.GetCustomerRequest) -> pb.Customer:
        external_id = required(request.external_id, "external_id")
        return customer_pb(get_customer(self.engine, principal.tenant_id, external_id))

    @rpc(READ)
    def ListCustomers(self, principal: Principal, request: pb.ListCustomersRequest) -> pb.ListCustomersResponse:
        def fetch(after: str | None, limit: int) -> tuple[list[pb.Customer], str | None]:
            page = list_customers(self.engine, principal.tenant_id, after, limit)
            return [customer_pb(c) for c in page.customers], page.next_after

        out, more = gather_pages(fetch, str_token(request.page_token), page_size(request.page_size), DOMAIN_PAGE_MAX)
        token = encode_token(out[-1].external_id) if more and out else ""
        return pb.ListCustomersResponse(customers=out, next_page_token=token)

    @rpc(ADMIN)
    def UpdateCustomer(self, principal: Principal, request: pb.UpdateCustomerRequest) -> pb.Customer:
        external_id = required(request.external_id, "external_id")
        change = _update(request)
        try:
            updated = update_customer(self.engine, principal.tenant_id, external_id, change, now())
        except ValidationError as exc:  # the merged definition (e.g. an unknown currency or zone)
            raise validation_error(exc, "customer") from None
        return customer_pb(updated)


__all__ = ["UPDATABLE", "CustomerRpcs"]
