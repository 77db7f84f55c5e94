"""Coupons and discounts: what a tenant offers off its prices, and to whom.

* A **coupon** is a tenant's reusable definition: a code (unique per tenant), a percent off (exact,
  0 < p <= 100) or an amount off (integer minor units of one currency), how long it lasts (`once`,
  `repeating` for N billing periods, or `forever`), and optionally which charge codes it discounts, the
  instant after which it can no longer be applied, and how many times it may be applied in all.
  A coupon never changes once created: discounts already applied, and invoices already issued, were
  computed from exactly these terms.
* A **discount** is a coupon applied to one customer (every subscription of it) or to one subscription,
  in force from `starts_at` (default: when applied) until it is removed. Removing ends it; documents
  already issued keep their discount lines.
* A **redemption** is one billing period a discount produced a line for. `once` allows one period,
  `repeating` N, `forever` any number. Redemptions are rows unique per (discount, period start), so a
  re-run of the same period (a retried batch, a re-issue after a void) applies the discount again without
  counting it again: `ActiveDiscount.redeemed` carries the periods already counted for that reason.

`max_redemptions` limits how many times a coupon may be *applied* (discounts created, removed ones
included), as Stripe's coupons do; periods are limited per discount by the duration. The invoice run
reads `active_discounts` and records what `invoicing.documents` computed with `record_redemptions`,
both inside its own transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from invoicing.catalog._customer import LIST_LIMIT_MAX
from invoicing.catalog._period import stored_utc, utc
from invoicing.catalog._plan import CODE_PATTERN
from invoicing.tables import coupons, customers, discount_redemptions, discounts, subscriptions
from metering.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from metering.text import control_problem
from metering.transactions import begin_write
from rating.errors import InvalidPriceError, RatingError
from rating.fixedpoint import as_decimal, decimal_places, from_scaled, to_scaled
from rating.unit import currency as currency_unit

CouponKind = Literal["percent", "amount"]
Duration = Literal["once", "repeating", "forever"]
KINDS: tuple[CouponKind, ...] = ("percent", "amount")
DURATIONS: tuple[Duration, ...] = ("once", "repeating", "forever")

COUPON_CODE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CHARGE_CODE_RE = re.compile(CODE_PATTERN)
NAME_CHARS_MAX = 256
#: The percent column holds decimal text; 24 characters are far more places than any real percent needs.
PERCENT_CHARS_MAX = 24
#: A coupon naming more charge codes than this is a catalogue, not a coupon (and one JSON cell holds them).
APPLIES_TO_MAX = 100
#: Repeating coupons: at most this many periods (a century of monthly periods; beyond is "forever").
PERIODS_MAX = 1200
#: Ids are 32-bit integer keys on every database.
ID_MAX = 2**31 - 1
#: Customers per IN list (well under every database's bound-parameter limit).
_CHUNK = 900


class InvalidCoupon(InvalidArgument):
    """A coupon definition that breaks a rule; `field` names the part at fault, so each edge can say
    it in its own terms (`coupon.percent` in the API, `--percent` in the CLI)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CouponDefinition:
    """A coupon as asked for. Percent and amount are exact decimals (Decimal, int or plain decimal text;
    floats are refused); `create_coupon` checks everything and stores the normalised terms."""

    code: str
    kind: str
    duration: str = "once"
    name: str = ""
    percent: Decimal | int | str | None = None
    amount: Decimal | int | str | None = None
    currency: str | None = None
    periods: int | None = None  # repeating only
    applies_to: Sequence[str] | None = None  # None or empty: every charge
    redeem_by: datetime | None = None
    max_redemptions: int | None = None


@dataclass(frozen=True, slots=True)
class Coupon:
    id: int
    tenant_id: int
    code: str
    name: str
    kind: CouponKind
    percent: Decimal | None  # percent coupons
    amount: int | None  # amount coupons: minor units of `currency`
    currency: str | None  # amount coupons
    duration: Duration
    periods: int | None  # repeating: N; None for once and forever (see `period_limit`)
    applies_to: tuple[str, ...] | None  # None: every charge
    redeem_by: datetime | None
    max_redemptions: int | None
    times_applied: int
    created_at: datetime

    @property
    def period_limit(self) -> int | None:
        """How many billing periods one discount of this coupon may discount; None = no limit."""
        return 1 if self.duration == "once" else self.periods if self.duration == "repeating" else None

    @property
    def amount_decimal(self) -> Decimal | None:
        """The amount off in the currency's major unit, at its scale ("5.00" USD, "500" JPY)."""
        if self.amount is None or self.currency is None:
            return None
        return from_scaled(self.amount, currency_unit(self.currency).scale)

    @property
    def terms(self) -> str:
        """One line for people: "12.5% off, for 3 periods"."""
        off = f"{format(self.percent, 'f')}%" if self.percent is not None else f"{self.amount_decimal} {self.currency}"
        lasts = {"once": "once", "forever": "forever"}.get(self.duration, f"for {self.periods} periods")
        on = "" if self.applies_to is None else f" on {', '.join(self.applies_to)}"
        return f"{off} off{on}, {lasts}"


@dataclass(frozen=True, slots=True)
class CouponPage:
    coupons: list[Coupon]
    next_after: str | None  # pass as `after` for the next page; None on the last page


@dataclass(frozen=True, slots=True)
class Discount:
    id: int
    tenant_id: int
    coupon: Coupon
    customer_id: int
    customer: str  # external id
    subscription_id: int | None  # None: every subscription of the customer
    starts_at: datetime
    removed_at: datetime | None
    periods_used: int
    created_at: datetime

    @property
    def periods_remaining(self) -> int | None:
        limit = self.coupon.period_limit
        return None if limit is None else max(0, limit - self.periods_used)

    def status(self, at: datetime) -> str:
        """`removed`, `scheduled` (starts later), `used` (no periods left) or `active`, as of `at`."""
        if self.removed_at is not None and self.removed_at <= at:
            return "removed"
        if self.starts_at > at:
            return "scheduled"
        return "used" if self.periods_remaining == 0 else "active"


@dataclass(frozen=True, slots=True)
class DiscountPage:
    discounts: list[Discount]
    next_after: int | None  # pass as `after` for the next page; None on the last page


@dataclass(frozen=True, slots=True)
class ActiveDiscount:
    """A discount in force, as the invoice run applies it (`invoicing.documents._discount.discount_lines`).

    `redeemed` holds the period starts already counted: a document for one of those periods gets the
    discount again (a re-run, a re-issue) even when `periods_remaining` is 0, and is not counted again."""

    id: int
    coupon: str  # code
    kind: CouponKind
    percent: Decimal | None
    amount: int | None  # minor units of `currency`
    currency: str | None
    duration: Duration
    customer_id: int
    subscription_id: int | None  # None: every line of the customer; else only this subscription's
    applies_to: frozenset[str] | None  # charge codes; None: every charge
    applied_at: datetime  # when it starts to apply
    periods_remaining: int | None  # None: forever
    redeemed: frozenset[datetime] = frozenset()


@dataclass(frozen=True, slots=True)
class Redemption:
    """One billing period a discount produced a line for: `period_start` identifies the period, `amount`
    (minor units of `currency`, positive) is what it took off the document."""

    discount_id: int
    period_start: datetime
    amount: int
    currency: str


# --- coupons -------------------------------------------------------------------------------------------------
def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _exact(value: Decimal | int | str, what: str) -> Decimal:
    try:
        if isinstance(value, str) and len(value) > PERCENT_CHARS_MAX * 2:
            raise InvalidCoupon(what, f"{len(value)} characters is too long for a decimal")
        return as_decimal(value, what)
    except RatingError as exc:
        raise InvalidCoupon(what, str(exc).removeprefix(f"{what}: ")) from None


def _checked(d: CouponDefinition) -> dict[str, Any]:
    """The coupons row for a definition; every rule is checked here, the one place coupons are made."""
    if not isinstance(d.code, str) or COUPON_CODE_RE.fullmatch(d.code) is None:
        raise InvalidCoupon("code", f"{d.code!r} must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'")
    if len(d.name) > NAME_CHARS_MAX:
        raise InvalidCoupon("name", f"at most {NAME_CHARS_MAX} characters, got {len(d.name)}")
    if problem := control_problem(d.name, "name"):
        raise InvalidCoupon("name", problem.removeprefix("name: "))
    if d.kind not in KINDS:
        raise InvalidCoupon("kind", f"{d.kind!r} is not a coupon kind; use percent or amount")
    if d.duration not in DURATIONS:
        raise InvalidCoupon("duration", f"{d.duration!r} is not a duration; use once, repeating or forever")
    row: dict[str, Any] = {"code": d.code, "name": d.name or d.code, "kind": d.kind, "duration": d.duration}
    if d.kind == "percent":
        if d.percent is None:
            raise InvalidCoupon("percent", 'is required for a percent coupon (e.g. "12.5")')
        if d.amount is not None or d.currency:
            raise InvalidCoupon("amount", "a percent coupon has no amount or currency; give one or the other")
        percent = _exact(d.percent, "percent")
        if not 0 < percent <= 100:
            raise InvalidCoupon("percent", f"must be more than 0 and at most 100, got {format(percent, 'f')}")
        text = format(percent.normalize(), "f")
        if len(text) > PERCENT_CHARS_MAX:
            raise InvalidCoupon("percent", f"{text} has more digits than a percent needs (at most {PERCENT_CHARS_MAX})")
        row |= {"percent": text, "amount": None, "currency": None}
    else:
        if d.amount is None:
            raise InvalidCoupon("amount", 'is required for an amount coupon (e.g. "5.00" with a currency)')
        if d.percent is not None:
            raise InvalidCoupon("percent", "an amount coupon has no percent; give one or the other")
        if not d.currency:
            raise InvalidCoupon("currency", "is required for an amount coupon (an ISO 4217 code such as USD)")
        try:
            scale = currency_unit(d.currency).scale
        except InvalidPriceError:
            raise InvalidCoupon("currency", f"unknown currency {d.currency!r}; use an ISO 4217 code") from None
        amount = _exact(d.amount, "amount")
        if amount <= 0:
            raise InvalidCoupon("amount", f"must be positive, got {format(amount, 'f')}")
        if decimal_places(amount.normalize()) > scale:
            raise InvalidCoupon("amount", f"{format(amount, 'f')} has more decimal places than {d.currency} ({scale})")
        try:
            minor = to_scaled(amount, scale, "amount")
        except RatingError as exc:
            raise InvalidCoupon("amount", str(exc).removeprefix("amount: ")) from None
        row |= {"percent": None, "amount": minor, "currency": d.currency}
    if d.duration == "repeating":
        if d.periods is None or not 1 <= d.periods <= PERIODS_MAX:
            raise InvalidCoupon("periods", f"a repeating coupon lasts 1 to {PERIODS_MAX} periods, got {d.periods}")
        row["periods"] = d.periods
    elif d.periods is not None:
        raise InvalidCoupon("periods", f"only a repeating coupon has periods; {d.duration} has none")
    else:
        row["periods"] = None
    codes = tuple(d.applies_to or ())
    if len(codes) > APPLIES_TO_MAX:
        raise InvalidCoupon("applies_to", f"at most {APPLIES_TO_MAX} charge codes, got {len(codes)}")
    for i, code in enumerate(codes):
        if not isinstance(code, str) or _CHARGE_CODE_RE.fullmatch(code) is None:
            raise InvalidCoupon(f"applies_to[{i}]", f"{code!r} is not a charge code (lower case, 1 to 64 characters)")
    row["applies_to"] = _dumps(sorted(set(codes))) if codes else None
    row["redeem_by"] = None if d.redeem_by is None else utc(d.redeem_by)
    if d.max_redemptions is not None and not 1 <= d.max_redemptions <= ID_MAX:
        raise InvalidCoupon("max_redemptions", f"must be 1 to {ID_MAX} (or none for no limit), got {d.max_redemptions}")
    row["max_redemptions"] = d.max_redemptions
    return row


def _coupon(r: Any) -> Coupon:
    return Coupon(
        id=r.id,
        tenant_id=r.tenant_id,
        code=r.code,
        name=r.name,
        kind=r.kind,
        percent=None if r.percent is None else Decimal(r.percent),
        amount=r.amount,
        currency=r.currency,
        duration=r.duration,
        periods=r.periods,
        applies_to=None if r.applies_to is None else tuple(json.loads(r.applies_to)),
        redeem_by=None if r.redeem_by is None else stored_utc(r.redeem_by),
        max_redemptions=r.max_redemptions,
        times_applied=r.times_applied,
        created_at=stored_utc(r.created_at),
    )


def create_coupon(engine: Engine, tenant_id: int, definition: CouponDefinition, now: datetime) -> Coupon:
    row = _checked(definition)
    try:
        with begin_write(engine) as conn:
            conn.execute(insert(coupons).values(**row, tenant_id=tenant_id, times_applied=0, created_at=utc(now)))
    except IntegrityError as exc:
        raise AlreadyExists(
            f"coupon {definition.code!r} already exists; coupons never change, so create one with a new code"
        ) from exc
    return get_coupon(engine, tenant_id, definition.code)


def _find_coupon(conn: Connection, tenant_id: int, code: str) -> Coupon:
    row = conn.execute(select(coupons).where(coupons.c.tenant_id == tenant_id, coupons.c.code == code)).one_or_none()
    if row is None:
        raise NotFound(f"no coupon {code!r}; list them with `tally coupon list TENANT`")
    return _coupon(row)


def get_coupon(engine: Engine, tenant_id: int, code: str) -> Coupon:
    with engine.connect() as conn:
        return _find_coupon(conn, tenant_id, code)


def list_coupons(engine: Engine, tenant_id: int, after: str | None = None, limit: int = 100) -> CouponPage:
    """Coupons by code, after the cursor `after` (keyset pagination, stable while coupons are added)."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidArgument(f"limit must be 1 to {LIST_LIMIT_MAX}, got {limit}")
    query = select(coupons).where(coupons.c.tenant_id == tenant_id)
    if after is not None:
        query = query.where(coupons.c.code > after)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(coupons.c.code).limit(limit + 1)).all()
    page = [_coupon(r) for r in rows[:limit]]
    return CouponPage(page, page[-1].code if len(rows) > limit else None)


# --- discounts -----------------------------------------------------------------------------------------------
def _discount_query(tenant_id: int) -> Any:
    used = (
        select(func.count())
        .select_from(discount_redemptions)
        .where(discount_redemptions.c.discount_id == discounts.c.id)
        .scalar_subquery()
    )
    return (
        select(discounts, customers.c.external_id, used.label("periods_used"))
        .join(customers, customers.c.id == discounts.c.customer_id)
        .where(discounts.c.tenant_id == tenant_id)
    )


def _discounts(conn: Connection, tenant_id: int, rows: Sequence[Any]) -> list[Discount]:
    ids = sorted({r.coupon_id for r in rows})
    by_id = {
        c.id: _coupon(c)
        for c in (conn.execute(select(coupons).where(coupons.c.id.in_(ids))).all() if ids else [])
        if c.tenant_id == tenant_id
    }
    return [
        Discount(
            id=r.id,
            tenant_id=r.tenant_id,
            coupon=by_id[r.coupon_id],
            customer_id=r.customer_id,
            customer=r.external_id,
            subscription_id=r.subscription_id,
            starts_at=stored_utc(r.starts_at),
            removed_at=None if r.removed_at is None else stored_utc(r.removed_at),
            periods_used=int(r.periods_used),
            created_at=stored_utc(r.created_at),
        )
        for r in rows
    ]


def _get_discount(conn: Connection, tenant_id: int, discount_id: int) -> Discount:
    row = (
        conn.execute(_discount_query(tenant_id).where(discounts.c.id == discount_id)).one_or_none()
        if 0 < discount_id <= ID_MAX
        else None
    )
    if row is None:
        raise NotFound(f"no discount {discount_id}; list them with `tally coupon discounts TENANT`")
    return _discounts(conn, tenant_id, [row])[0]


def get_discount(engine: Engine, tenant_id: int, discount_id: int) -> Discount:
    with engine.connect() as conn:
        return _get_discount(conn, tenant_id, discount_id)


def _target(
    conn: Connection, tenant_id: int, customer: str | None, subscription_id: int | None, at: datetime
) -> tuple[int, str, str, int | None]:
    """(customer id, external id, currency, subscription id) of what a coupon is applied to."""
    if (customer is None) == (subscription_id is None):
        raise InvalidArgument("apply a coupon to a customer or to a subscription: give exactly one of them")
    if subscription_id is not None:
        row = (
            conn.execute(
                select(subscriptions.c.state, subscriptions.c.ends_at, customers.c.id, customers.c.external_id,
                       customers.c.currency)
                .join(customers, customers.c.id == subscriptions.c.customer_id)
                .where(subscriptions.c.tenant_id == tenant_id, subscriptions.c.id == subscription_id)
            ).one_or_none()
            if 0 < subscription_id <= ID_MAX
            else None
        )  # fmt: skip
        if row is None:
            raise NotFound(f"no subscription {subscription_id}; list them with `tally subscription list TENANT`")
        if row.state == "cancelled" and row.ends_at is not None and stored_utc(row.ends_at) <= at:
            raise FailedPrecondition(
                f"subscription {subscription_id} ended at {stored_utc(row.ends_at).isoformat()}; "
                "a discount on it would never apply"
            )
        return row.id, row.external_id, row.currency, subscription_id
    found = conn.execute(
        select(customers.c.id, customers.c.external_id, customers.c.currency).where(
            customers.c.tenant_id == tenant_id, customers.c.external_id == customer
        )
    ).one_or_none()
    if found is None:
        raise NotFound(f"no customer {customer!r}; create it with `tally customer create TENANT {customer}`")
    return found.id, found.external_id, found.currency, None


def apply_coupon(
    engine: Engine,
    tenant_id: int,
    code: str,
    now: datetime,
    *,
    customer: str | None = None,
    subscription_id: int | None = None,
    starts_at: datetime | None = None,
) -> Discount:
    """Apply coupon `code` to a customer (by external id: every subscription of it) or to one subscription,
    from `starts_at` (default `now`). Refused when the coupon cannot be redeemed any more (redeem-by
    passed, or applied `max_redemptions` times), when an amount coupon's currency is not the customer's,
    and when the same coupon is already in force on the same customer or subscription (remove it first:
    two identical discounts are almost always a double click)."""
    at = utc(now)
    start = at if starts_at is None else utc(starts_at)
    with begin_write(engine) as conn:
        coupon = _find_coupon(conn, tenant_id, code)
        customer_id, external_id, currency, sub_id = _target(conn, tenant_id, customer, subscription_id, at)
        if coupon.redeem_by is not None and (at >= coupon.redeem_by or start >= coupon.redeem_by):
            raise FailedPrecondition(
                f"coupon {code!r} could be applied until {coupon.redeem_by.isoformat()}; create a new coupon"
            )
        if coupon.kind == "amount" and coupon.currency != currency:
            raise FailedPrecondition(
                f"coupon {code!r} takes {coupon.amount_decimal} {coupon.currency} off, but customer "
                f"{external_id!r} pays in {currency}; use a coupon in {currency} or a percent coupon"
            )
        # The limit is checked by the UPDATE itself, and the row it locks serialises applications of one coupon,
        # so two concurrent ones can neither both pass the limit nor both pass the duplicate check below.
        taken = conn.execute(
            update(coupons)
            .where(
                coupons.c.id == coupon.id,
                or_(coupons.c.max_redemptions.is_(None), coupons.c.times_applied < coupons.c.max_redemptions),
            )
            .values(times_applied=coupons.c.times_applied + 1)
        ).rowcount
        if taken != 1:
            raise FailedPrecondition(
                f"coupon {code!r} was applied {coupon.max_redemptions} times, its limit; create a new coupon"
            )
        d = discounts.c
        same = conn.execute(
            select(d.id).where(
                d.tenant_id == tenant_id, d.coupon_id == coupon.id, d.customer_id == customer_id,
                d.subscription_id.is_(None) if sub_id is None else d.subscription_id == sub_id,
                or_(d.removed_at.is_(None), d.removed_at > at),
            )
        ).first()  # fmt: skip
        if same is not None:
            target = f"customer {external_id!r}" if sub_id is None else f"subscription {sub_id}"
            raise AlreadyExists(
                f"coupon {code!r} is already applied to {target} as discount {same.id}; remove that one first "
                f"(`tally coupon remove TENANT {same.id}`) to apply it again"
            )
        new_id = conn.execute(
            insert(discounts)
            .values(
                tenant_id=tenant_id, coupon_id=coupon.id, customer_id=customer_id, subscription_id=sub_id,
                starts_at=start, removed_at=None, created_at=at,
            )
            .returning(discounts.c.id)
        ).scalar_one()  # fmt: skip
        return _get_discount(conn, tenant_id, new_id)


def list_discounts(
    engine: Engine,
    tenant_id: int,
    *,
    customer: str | None = None,
    subscription_id: int | None = None,
    include_removed: bool = False,
    at: datetime | None = None,
    after: int | None = None,
    limit: int = 100,
) -> DiscountPage:
    """Discounts by id, optionally of one customer (including its subscriptions' discounts) or one
    subscription. Removed ones (removed at or before `at`, default: ever) only with `include_removed`."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidArgument(f"limit must be 1 to {LIST_LIMIT_MAX}, got {limit}")
    query = _discount_query(tenant_id)
    with engine.connect() as conn:
        if customer is not None:
            found = conn.execute(
                select(customers.c.id).where(customers.c.tenant_id == tenant_id, customers.c.external_id == customer)
            ).scalar_one_or_none()
            if found is None:
                raise NotFound(f"no customer {customer!r}; create it with `tally customer create TENANT {customer}`")
            query = query.where(discounts.c.customer_id == found)
        if subscription_id is not None:
            query = query.where(discounts.c.subscription_id == subscription_id)
        if not include_removed:
            cut = discounts.c.removed_at.is_(None)
            query = query.where(cut if at is None else or_(cut, discounts.c.removed_at > utc(at)))
        if after is not None:
            query = query.where(discounts.c.id > after)
        rows = conn.execute(query.order_by(discounts.c.id).limit(limit + 1)).all()
        page = _discounts(conn, tenant_id, rows[:limit])
    return DiscountPage(page, page[-1].id if len(rows) > limit else None)


def remove_discount(engine: Engine, tenant_id: int, discount_id: int, now: datetime) -> Discount:
    """End a discount at `now`: documents billed after it no longer get it; documents already issued keep
    their discount lines. Removing a removed discount changes nothing (a retry is harmless)."""
    at = utc(now)
    with begin_write(engine) as conn:
        current = _get_discount(conn, tenant_id, discount_id)
        if current.removed_at is None:
            conn.execute(
                update(discounts)
                .where(discounts.c.id == discount_id, discounts.c.removed_at.is_(None))
                .values(removed_at=at)
            )
            current = _get_discount(conn, tenant_id, discount_id)
    return current


# --- for the invoice run -------------------------------------------------------------------------------------
def active_discounts(
    conn: Connection, tenant_id: int, customer_ids: Sequence[int], at: datetime
) -> dict[int, list[ActiveDiscount]]:
    """Per customer id, the discounts in force at `at` (started, not removed), customer-level and
    subscription-level alike, in the order they apply: (applied_at, id). Discounts with no periods left
    are included with `periods_remaining=0` and the periods they redeemed, so a re-run of one of those
    periods discounts it again; `invoicing.documents._discount.discount_lines` applies nothing else for them."""
    moment = utc(at)
    out: dict[int, list[ActiveDiscount]] = {}
    d = discounts.c
    ids = sorted(set(customer_ids))
    rows: list[Any] = []
    for i in range(0, len(ids), _CHUNK):
        rows += conn.execute(
            select(
                coupons, d.id.label("discount_id"), d.customer_id.label("customer_id"),
                d.subscription_id.label("subscription_id"), d.starts_at.label("starts_at"),
            )
            .join(coupons, coupons.c.id == d.coupon_id)
            .where(
                d.tenant_id == tenant_id, d.customer_id.in_(ids[i : i + _CHUNK]), d.starts_at <= moment,
                or_(d.removed_at.is_(None), d.removed_at > moment),
            )
        ).all()  # fmt: skip
    limited = sorted(r.discount_id for r in rows if r.duration != "forever")
    redeemed: dict[int, set[datetime]] = {}
    r_ = discount_redemptions.c
    for i in range(0, len(limited), _CHUNK):
        for discount_id, start in conn.execute(
            select(r_.discount_id, r_.period_start).where(
                r_.tenant_id == tenant_id, r_.discount_id.in_(limited[i : i + _CHUNK])
            )
        ):
            redeemed.setdefault(discount_id, set()).add(stored_utc(start))
    for r in sorted(rows, key=lambda r: (stored_utc(r.starts_at), r.discount_id)):
        coupon = _coupon(r)
        used = frozenset(redeemed.get(r.discount_id, ()))
        limit = coupon.period_limit
        out.setdefault(r.customer_id, []).append(
            ActiveDiscount(
                id=r.discount_id, coupon=coupon.code, kind=coupon.kind, percent=coupon.percent, amount=coupon.amount,
                currency=coupon.currency, duration=coupon.duration, customer_id=r.customer_id,
                subscription_id=r.subscription_id,
                applies_to=None if coupon.applies_to is None else frozenset(coupon.applies_to),
                applied_at=stored_utc(r.starts_at),
                periods_remaining=None if limit is None else max(0, limit - len(used)), redeemed=used,
            )
        )  # fmt: skip
    return out


def record_redemptions(conn: Connection, tenant_id: int, used: Sequence[Redemption]) -> None:
    """Record the periods these discounts were used for, in the caller's transaction (the one writing the
    documents); a (discount, period start) already recorded is left as it is, so a re-run counts nothing
    twice. Every discount must be the tenant's."""
    if not used:
        return
    ids = sorted({u.discount_id for u in used})
    known: set[int] = set()
    for i in range(0, len(ids), _CHUNK):
        known.update(
            conn.execute(
                select(discounts.c.id).where(
                    discounts.c.tenant_id == tenant_id, discounts.c.id.in_(ids[i : i + _CHUNK])
                )
            ).scalars()
        )
    missing = [i for i in ids if i not in known]
    if missing:
        raise NotFound(f"no discount {missing[0]} for this tenant; its redemption cannot be recorded")
    values = [
        {"tenant_id": tenant_id, "discount_id": u.discount_id, "period_start": utc(u.period_start),
         "amount": u.amount, "currency": u.currency}
        for u in used
    ]  # fmt: skip
    make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for i in range(0, len(values), _CHUNK // 6):
        conn.execute(make(discount_redemptions).values(values[i : i + _CHUNK // 6]).on_conflict_do_nothing())


__all__ = [
    "APPLIES_TO_MAX",
    "DURATIONS",
    "KINDS",
    "ActiveDiscount",
    "Coupon",
    "CouponDefinition",
    "CouponPage",
    "Discount",
    "DiscountPage",
    "InvalidCoupon",
    "Redemption",
    "active_discounts",
    "apply_coupon",
    "create_coupon",
    "get_coupon",
    "get_discount",
    "list_coupons",
    "list_discounts",
    "record_redemptions",
    "remove_discount",
]
