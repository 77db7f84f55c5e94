"""Units the ledger counts in, and the conversion rates between a currency and a points unit.

Currencies come from `rating.unit` (ISO minor units, never guessed); points units are defined per
tenant with their own scale. Codes cannot collide: currencies are upper-case, points lower-case.

A rate says how many points one whole currency unit buys, exactly (a decimal, stored as a scaled
integer), over a half-open validity period [valid_from, valid_to). Periods of one pair never
overlap, so "the rate in force at t" is exactly one row or none — refused, never interpolated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, and_, or_, select, tuple_

from invoicing.ledger.errors import RateNotFound
from invoicing.ledger.tables import ledger_points_units, ledger_rates
from metering.errors import AlreadyExists, InvalidArgument, NotFound
from rating.errors import RatingError
from rating.fixedpoint import INT64_MAX, as_decimal, decimal_places, from_scaled
from rating.rounding import RoundingMode
from rating.unit import CURRENCY_MINOR_UNITS, MAX_UNIT_SCALE, Unit, currency, points


def now_us() -> int:
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    """µs since the epoch; naive datetimes are refused because a ledger time must be unambiguous."""
    if moment.tzinfo is None:
        raise InvalidArgument(f"time {moment.isoformat()} has no UTC offset; add one (e.g. +00:00)")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(microsecond=us % 1_000_000)


def is_currency(code: str) -> bool:
    return code in CURRENCY_MINOR_UNITS


#: Longest display name of a points unit (the column's width).
NAME_CHARS_MAX = 128


@dataclass(frozen=True, slots=True)
class PointsUnit:
    """A tenant's points unit as defined: its code, scale and display name."""

    code: str
    scale: int
    name: str

    @property
    def unit(self) -> Unit:
        return Unit(self.code, self.scale, "points")


def check_points_code(code: str, field: str = "code") -> None:
    """A points unit code: lower-case, so it can never collide with a currency, and not a currency's letters."""
    if is_currency(code.upper()):
        raise InvalidArgument(
            f"{field}: {code!r} is a currency code; a points unit needs its own lower-case code, e.g. pts"
        )
    try:
        points(code, 0)
    except RatingError:
        shown = code if len(code) <= 40 else code[:40] + "…"
        raise InvalidArgument(
            f"{field}: {shown!r} is not a points unit code: a lower-case letter, then up to 31 lower-case letters, "
            "digits or underscores (e.g. pts)"
        ) from None


def define_points_unit(conn: Connection, tenant_id: int, code: str, scale: int, name: str = "") -> Unit:
    """Define the unit; defining it again with the same scale (and name, when given) returns it."""
    check_points_code(code)
    if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= MAX_UNIT_SCALE:
        raise InvalidArgument(f"scale: {scale!r} must be a whole number of decimal places from 0 to {MAX_UNIT_SCALE}")
    if len(name) > NAME_CHARS_MAX:
        raise InvalidArgument(f"name: {len(name)} characters; at most {NAME_CHARS_MAX}")
    unit = points(code, scale)
    u = ledger_points_units.c
    row = conn.execute(select(u.scale, u.name).where(u.tenant_id == tenant_id, u.code == code)).first()
    if row is not None:
        if row.scale != scale:
            raise AlreadyExists(
                f"scale: points unit {code!r} already exists with scale {row.scale}; scales never change "
                "(define another code)"
            )
        if name and name != row.name:
            raise AlreadyExists(f"name: points unit {code!r} already exists named {row.name!r}; names never change")
        return unit
    conn.execute(
        ledger_points_units.insert().values(
            tenant_id=tenant_id, code=code, scale=scale, name=name or code, created_at_us=now_us()
        )
    )
    return unit


def resolve_unit(conn: Connection, tenant_id: int, code: str) -> Unit:
    if is_currency(code):
        return currency(code)
    row = conn.execute(
        select(ledger_points_units.c.scale).where(
            ledger_points_units.c.tenant_id == tenant_id, ledger_points_units.c.code == code
        )
    ).first()
    if row is None:
        raise NotFound(f"unknown unit {code!r}: use an ISO currency code or define the points unit first")
    return Unit(code, int(row.scale), "points")


def get_points_unit(conn: Connection, tenant_id: int, code: str) -> PointsUnit:
    u = ledger_points_units.c
    row = conn.execute(select(u.code, u.scale, u.name).where(u.tenant_id == tenant_id, u.code == code)).first()
    if row is None:
        raise NotFound(f"no points unit {code!r} in this tenant; define it first")
    return PointsUnit(row.code, int(row.scale), row.name)


def list_points_units(
    conn: Connection, tenant_id: int, after: str | None = None, limit: int | None = None
) -> list[PointsUnit]:
    """The tenant's points units by code; `after` a code and `limit` page through them."""
    u = ledger_points_units.c
    query = select(u.code, u.scale, u.name).where(u.tenant_id == tenant_id)
    if after is not None:
        query = query.where(u.code > after)
    query = query.order_by(u.code)
    if limit is not None:
        query = query.limit(limit)
    return [PointsUnit(r.code, int(r.scale), r.name) for r in conn.execute(query)]


def parse_amount(text: str | Decimal | int, unit: Unit) -> int:
    """A decimal amount as an exact count of the unit's smallest step; floats and extra places refused."""
    if isinstance(text, bool | float):
        raise InvalidArgument("amounts are decimal strings such as '12.50', never floats")
    try:
        value = as_decimal(text, "amount")
    except RatingError as exc:
        raise InvalidArgument(f"{exc}; write e.g. 12.50") from None
    if decimal_places(value) > unit.scale:
        raise InvalidArgument(f"{value} {unit} has more than {unit.scale} decimal places")
    scaled = int(value.scaleb(unit.scale))
    if not 0 < scaled <= INT64_MAX:
        raise InvalidArgument(
            f"amount {value} {unit} must be positive and at most {from_scaled(INT64_MAX, unit.scale)}"
        )
    return scaled


def format_amount(scaled: int, unit: Unit) -> str:
    return f"{from_scaled(scaled, unit.scale):f} {unit.code}"


@dataclass(frozen=True, slots=True)
class Rate:
    currency: str
    points_unit: str
    #: Points per one whole currency unit.
    rate: Decimal
    rounding: RoundingMode
    valid_from_us: int
    valid_to_us: int | None


def set_rate(
    conn: Connection,
    tenant_id: int,
    currency_code: str,
    points_unit: str,
    rate: Decimal | str,
    valid_from_us: int,
    valid_to_us: int | None = None,
    rounding: RoundingMode = RoundingMode.DOWN,
) -> Rate:
    """Points per one whole `currency_code` unit over [valid_from, valid_to); each refusal names its field."""
    if not is_currency(currency_code):
        raise InvalidArgument(f"currency: {currency_code!r} is not a known currency; use an ISO 4217 code such as USD")
    if is_currency(points_unit):
        raise InvalidArgument(
            f"points_unit: {points_unit!r} is a currency; a rate is between a currency and a points unit"
        )
    try:
        resolve_unit(conn, tenant_id, points_unit)
    except NotFound:
        raise NotFound(f"points_unit: {points_unit!r} is not a points unit of this tenant; define it first") from None
    try:
        value = as_decimal(rate, "rate")
    except RatingError as exc:
        raise InvalidArgument(str(exc)) from None
    if value <= 0:
        raise InvalidArgument(f"rate: {rate} must be positive (points per one {currency_code}), e.g. 100")
    places = decimal_places(value)
    if places > 12:
        raise InvalidArgument(f"rate: {value} has more than 12 decimal places")
    units = int(value.scaleb(places))
    if units > INT64_MAX:
        raise InvalidArgument(f"rate: {value} is too large")
    if valid_to_us is not None and valid_to_us <= valid_from_us:
        shown = from_us(valid_from_us).isoformat(), from_us(valid_to_us).isoformat()
        raise InvalidArgument(f"valid_to: {shown[1]} must be after valid_from {shown[0]}")
    r = ledger_rates.c
    end = valid_to_us if valid_to_us is not None else 2**62
    overlap = conn.execute(
        select(r.valid_from_us, r.valid_to_us).where(
            r.tenant_id == tenant_id,
            r.currency == currency_code,
            r.points_unit == points_unit,
            r.valid_from_us < end,
            or_(r.valid_to_us.is_(None), r.valid_to_us > valid_from_us),
        )
    ).first()
    if overlap is not None:
        until = "open-ended" if overlap.valid_to_us is None else f"until {from_us(overlap.valid_to_us).isoformat()}"
        raise AlreadyExists(
            f"valid_from: a {currency_code}->{points_unit} rate is already valid from "
            f"{from_us(overlap.valid_from_us).isoformat()} ({until}); periods of one pair must not overlap"
        )
    conn.execute(
        ledger_rates.insert().values(
            tenant_id=tenant_id,
            currency=currency_code,
            points_unit=points_unit,
            rate_units=units,
            rate_scale=places,
            rounding=rounding.value,
            valid_from_us=valid_from_us,
            valid_to_us=valid_to_us,
        )
    )
    return Rate(currency_code, points_unit, value, rounding, valid_from_us, valid_to_us)


def rate_at(conn: Connection, tenant_id: int, currency_code: str, points_unit: str, at_us: int) -> Rate:
    r = ledger_rates.c
    row = conn.execute(
        select(r.rate_units, r.rate_scale, r.rounding, r.valid_from_us, r.valid_to_us).where(
            r.tenant_id == tenant_id,
            r.currency == currency_code,
            r.points_unit == points_unit,
            r.valid_from_us <= at_us,
            or_(r.valid_to_us.is_(None), and_(r.valid_to_us > at_us)),
        )
    ).first()
    if row is None:
        raise RateNotFound(
            f"no {currency_code}->{points_unit} rate in force at {from_us(at_us).isoformat()}; set one with a "
            "validity period covering that time"
        )
    return Rate(
        currency_code,
        points_unit,
        from_scaled(int(row.rate_units), int(row.rate_scale)),
        RoundingMode(row.rounding),
        int(row.valid_from_us),
        None if row.valid_to_us is None else int(row.valid_to_us),
    )


#: A rate's place in the listing order: (currency, points unit, valid_from µs).
RateKey = tuple[str, str, int]


def list_rates(
    conn: Connection,
    tenant_id: int,
    currency_code: str | None = None,
    points_unit: str | None = None,
    after: RateKey | None = None,
    limit: int | None = None,
) -> list[Rate]:
    """The tenant's rates by (currency, points unit, valid_from), optionally of one currency and/or unit;
    `after` a rate's key and `limit` page through them."""
    r = ledger_rates.c
    query = select(
        r.currency, r.points_unit, r.rate_units, r.rate_scale, r.rounding, r.valid_from_us, r.valid_to_us
    ).where(r.tenant_id == tenant_id)
    if currency_code is not None:
        query = query.where(r.currency == currency_code)
    if points_unit is not None:
        query = query.where(r.points_unit == points_unit)
    if after is not None:
        query = query.where(tuple_(r.currency, r.points_unit, r.valid_from_us) > tuple_(*after))
    query = query.order_by(r.currency, r.points_unit, r.valid_from_us)
    if limit is not None:
        query = query.limit(limit)
    return [
        Rate(
            row.currency,
            row.points_unit,
            from_scaled(int(row.rate_units), int(row.rate_scale)),
            RoundingMode(row.rounding),
            int(row.valid_from_us),
            None if row.valid_to_us is None else int(row.valid_to_us),
        )
        for row in conn.execute(query)
    ]
