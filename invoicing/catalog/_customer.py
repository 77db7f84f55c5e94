"""Customers: who is billed, in which currency, and in which time zone their periods turn over.

The external id is the tenant's own name for the customer (events carry it), unique per tenant.
The currency is fixed once the customer has a subscription: every invoice, credit and ledger entry
already issued is in it, and converting them silently would rewrite history. So is the time zone:
it lays out the billing periods, and moving it would move periods that were already invoiced.
The tax id is the buyer's, printed on its documents; `invoice_grouping` overrides the tenant's billing
profile (None follows it), for customers whose subscriptions are paid by different departments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Engine, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from invoicing.catalog._period import stored_utc, utc, zone
from invoicing.tables import customers, subscriptions
from metering.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from metering.transactions import begin_write
from rating.errors import InvalidPriceError
from rating.unit import currency as currency_unit

LIST_LIMIT_MAX = 500
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,256}$"
TAX_ID_MAX = 64
#: A customer's document grouping: None follows the tenant's billing profile.
INVOICE_GROUPINGS = ("customer", "subscription")


def _check_currency(code: str) -> str:
    try:
        currency_unit(code)
    except InvalidPriceError:
        raise ValueError(f"unknown currency {code!r}; use an ISO 4217 code such as USD or EUR") from None
    return code


def _check_timezone(name: str) -> str:
    try:
        zone(name)
    except InvalidArgument as exc:
        raise ValueError(str(exc)) from None
    return name


def _check_tax_id(value: str | None) -> str | None:
    if value is not None and not value.isprintable():
        raise ValueError("must be one line of printable characters (no line breaks or control characters)")
    return None if value is None else value.strip()


def _check_grouping(value: str | None) -> str | None:
    """An empty string (the API's unset string) means the same as None: follow the tenant's billing profile."""
    if value in (None, ""):
        return None
    if value not in INVOICE_GROUPINGS:
        raise ValueError(
            "use 'customer' (one document per billing date and currency), 'subscription' (one per "
            "subscription), or leave it empty to follow the tenant's billing profile"
        )
    return value


class Address(BaseModel):
    """A postal address, structured so tax and invoice rendering never parse free text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line1: str = Field("", max_length=256)
    line2: str = Field("", max_length=256)
    city: str = Field("", max_length=128)
    region: str = Field("", max_length=128)
    postal_code: str = Field("", max_length=32)
    country: str = Field("", pattern=r"^([A-Z]{2})?$", description="ISO 3166-1 alpha-2, e.g. FR")


class CustomerDefinition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    external_id: str = Field(pattern=EXTERNAL_ID_PATTERN)
    name: str = Field("", max_length=256)
    currency: str = "USD"
    timezone: str = "UTC"
    address: Address | None = None
    tax_region: str = Field("", max_length=32)
    email: str = Field("", max_length=320, pattern=r"^$|^[^@\s]+@[^@\s]+$")
    metadata: dict[str, str] = Field(default_factory=dict)
    # The buyer's tax id (VAT number, EIN, ...) printed on its documents.
    tax_id: str = Field("", max_length=TAX_ID_MAX)
    # customer | subscription; None follows the tenant's billing profile.
    invoice_grouping: str | None = None

    _currency = field_validator("currency")(_check_currency)
    _timezone = field_validator("timezone")(_check_timezone)
    _tax_id = field_validator("tax_id")(_check_tax_id)
    _grouping = field_validator("invoice_grouping")(_check_grouping)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 50 or any(not k or len(k) > 64 or len(v) > 512 for k, v in value.items()):
            raise ValueError("metadata holds at most 50 keys of 1-64 characters with values up to 512 characters")
        return dict(sorted(value.items()))


class CustomerUpdate(BaseModel):
    """Fields to change; None leaves a field as it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(None, max_length=256)
    currency: str | None = None
    timezone: str | None = None
    address: Address | None = None
    tax_region: str | None = Field(None, max_length=32)
    email: str | None = Field(None, max_length=320, pattern=r"^$|^[^@\s]+@[^@\s]+$")
    metadata: dict[str, str] | None = None
    tax_id: str | None = Field(None, max_length=TAX_ID_MAX)
    # "" sets it back to following the tenant's billing profile.
    invoice_grouping: str | None = None

    _tax_id = field_validator("tax_id")(_check_tax_id)

    @field_validator("invoice_grouping")
    @classmethod
    def _grouping(cls, value: str | None) -> str | None:
        return None if value is None else (_check_grouping(value) or "")


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    tenant_id: int
    external_id: str
    name: str
    currency: str
    timezone: str
    address: Address | None
    tax_region: str
    email: str
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    tax_id: str = ""
    invoice_grouping: str | None = None  # None: the tenant's billing profile decides


@dataclass(frozen=True, slots=True)
class CustomerPage:
    customers: list[Customer]
    next_after: str | None  # pass as `after` for the next page; None on the last page


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def customer_row(d: CustomerDefinition | Customer) -> dict[str, Any]:
    """The columns of a customer row (bulk loaders write many at once through the same mapping)."""
    return {
        "name": d.name or d.external_id,
        "currency": d.currency,
        "timezone": d.timezone,
        "address": None if d.address is None else _dumps(d.address.model_dump()),
        "tax_region": d.tax_region,
        "email": d.email,
        "attributes": _dumps(d.metadata),
        "tax_id": d.tax_id,
        "invoice_grouping": d.invoice_grouping,
    }


def create_customer(engine: Engine, tenant_id: int, definition: CustomerDefinition, now: datetime) -> Customer:
    at = utc(now)
    values = {"tenant_id": tenant_id, "external_id": definition.external_id, **customer_row(definition)}
    try:
        with begin_write(engine) as conn:
            conn.execute(insert(customers).values(**values, created_at=at, updated_at=at))
    except IntegrityError as exc:
        raise AlreadyExists(
            f"customer {definition.external_id!r} already exists; see it with "
            f"`tally customer show TENANT {definition.external_id}`"
        ) from exc
    return get_customer(engine, tenant_id, definition.external_id)


def _customer(r: Any) -> Customer:
    return Customer(
        id=r.id,
        tenant_id=r.tenant_id,
        external_id=r.external_id,
        name=r.name,
        currency=r.currency,
        timezone=r.timezone,
        address=None if r.address is None else Address.model_validate(json.loads(r.address)),
        tax_region=r.tax_region,
        email=r.email,
        metadata=json.loads(r.attributes),
        created_at=stored_utc(r.created_at),
        updated_at=stored_utc(r.updated_at),
        tax_id=r.tax_id,
        invoice_grouping=r.invoice_grouping,
    )


def get_customer(engine: Engine, tenant_id: int, external_id: str) -> Customer:
    with engine.connect() as conn:
        row = conn.execute(
            select(customers).where(customers.c.tenant_id == tenant_id, customers.c.external_id == external_id)
        ).one_or_none()
    if row is None:
        raise NotFound(f"no customer {external_id!r}; create it with `tally customer create TENANT {external_id}`")
    return _customer(row)


def get_customer_by_id(engine: Engine, tenant_id: int, customer_id: int) -> Customer:
    with engine.connect() as conn:
        row = conn.execute(
            select(customers).where(customers.c.tenant_id == tenant_id, customers.c.id == customer_id)
        ).one_or_none()
    if row is None:
        raise NotFound(f"no customer with id {customer_id} for this tenant")
    return _customer(row)


def list_customers(engine: Engine, tenant_id: int, after: str | None = None, limit: int = 100) -> CustomerPage:
    """Customers ordered by external id, starting after the cursor `after` (keyset pagination:
    stable under concurrent inserts, and each page is one index range scan)."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidArgument(f"limit must be 1 to {LIST_LIMIT_MAX}, got {limit}")
    query = select(customers).where(customers.c.tenant_id == tenant_id)
    if after is not None:
        query = query.where(customers.c.external_id > after)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(customers.c.external_id).limit(limit + 1)).all()
    page = [_customer(r) for r in rows[:limit]]
    return CustomerPage(page, page[-1].external_id if len(rows) > limit else None)


def update_customer(
    engine: Engine, tenant_id: int, external_id: str, change: CustomerUpdate, now: datetime
) -> Customer:
    current = get_customer(engine, tenant_id, external_id)
    merged = CustomerDefinition(
        external_id=external_id,
        name=change.name if change.name is not None else current.name,
        currency=change.currency if change.currency is not None else current.currency,
        timezone=change.timezone if change.timezone is not None else current.timezone,
        address=change.address if change.address is not None else current.address,
        tax_region=change.tax_region if change.tax_region is not None else current.tax_region,
        email=change.email if change.email is not None else current.email,
        metadata=change.metadata if change.metadata is not None else current.metadata,
        tax_id=change.tax_id if change.tax_id is not None else current.tax_id,
        invoice_grouping=(
            current.invoice_grouping if change.invoice_grouping is None else (change.invoice_grouping or None)
        ),
    )
    with begin_write(engine) as conn:
        frozen = [
            name
            for name, old, new in (
                ("currency", current.currency, merged.currency),
                ("timezone", current.timezone, merged.timezone),
            )
            if old != new
        ]
        if frozen:
            subscribed = conn.execute(select(exists().where(subscriptions.c.customer_id == current.id))).scalar_one()
            if subscribed:
                raise FailedPrecondition(
                    f"customer {external_id!r} has subscriptions, so its {' and '.join(frozen)} cannot change "
                    "(issued invoices and past periods depend on them); create a new customer instead"
                )
        conn.execute(
            update(customers).where(customers.c.id == current.id).values(**customer_row(merged), updated_at=utc(now))
        )
    return get_customer(engine, tenant_id, external_id)


__all__ = [
    "INVOICE_GROUPINGS",
    "TAX_ID_MAX",
    "Address",
    "Customer",
    "CustomerDefinition",
    "CustomerPage",
    "CustomerUpdate",
    "create_customer",
    "get_customer",
    "get_customer_by_id",
    "list_customers",
    "update_customer",
]
