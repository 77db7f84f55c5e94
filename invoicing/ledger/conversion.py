"""Converting a customer's currency credits to points and back, at the rate in force.

A conversion is two linked transfers through the pair's conversion accounts (one per unit):
source wallet → conversion[from, peer=to], then conversion[to, peer=from] → target wallet. Both
land or neither does.

Remainder rule (exact, nothing lost): only an amount that converts *exactly* moves. With the
rate as a reduced fraction p/q of target steps per source step, exactly convertible source amounts
are the multiples of q. The requested amount is brought to such a multiple by the rate's named
rounding rule (`down`, the default, never takes more than asked; `up`/`half_*` may take up to q-1
steps more, still checked against the wallet), and the difference simply stays in the source
wallet: it never moves, so it can never be lost. A request that rounds to zero is refused with the
smallest convertible amount in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import Connection

from invoicing.ledger.account import get_or_create, wallet_kind
from invoicing.ledger.errors import ExistsWithDifferentBody, InsufficientFunds, InvalidTransfer
from invoicing.ledger.grant import _check_own_id
from invoicing.ledger.transfer import Result, Transfer, TransferFlags, apply_batch, load_transfers
from invoicing.ledger.unit import Rate, format_amount, is_currency, rate_at, resolve_unit
from metering.errors import InvalidArgument
from rating.fixedpoint import INT64_MAX
from rating.rounding import round_scaled
from rating.unit import Unit


@dataclass(frozen=True, slots=True)
class Conversion:
    id: str
    from_unit: str
    to_unit: str
    requested: int
    debited: int
    credited: int
    rate: Rate
    created: bool

    @property
    def left_in_source(self) -> int:
        """Requested but not converted (negative when an `up` rule took a little more)."""
        return self.requested - self.debited


def factor(rate: Rate, source: Unit, target: Unit) -> Fraction:
    """Target smallest steps per source smallest step, exact."""
    per_unit = Fraction(rate.rate) if is_currency(source.code) else 1 / Fraction(rate.rate)
    return per_unit * Fraction(10**target.scale, 10**source.scale)


def quote(amount: int, rate: Rate, source: Unit, target: Unit) -> tuple[int, int]:
    """(debited, credited) for a request of `amount` source steps, by the remainder rule above."""
    f = factor(rate, source, target)
    blocks = round_scaled(amount, f.denominator, rate.rounding)
    debited = blocks * f.denominator
    return debited, blocks * f.numerator


def quote_conversion(
    conn: Connection, tenant_id: int, amount: int, from_unit: str, to_unit: str, at_us: int
) -> tuple[int, int, Rate]:
    """(debited, credited, rate) of converting `amount` steps of `from_unit` at the rate in force at `at_us`,
    by the remainder rule; nothing moves. What `convert` then moves, so a quote shown before confirming is
    exactly what confirming it does (at the same rate)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= INT64_MAX:
        raise InvalidArgument(f"amount must be 1..{INT64_MAX} in the unit's smallest step")
    if is_currency(from_unit) == is_currency(to_unit):
        raise InvalidArgument("a conversion is between a currency and a points unit (one of each)")
    source, target = resolve_unit(conn, tenant_id, from_unit), resolve_unit(conn, tenant_id, to_unit)
    cur, pts = (from_unit, to_unit) if is_currency(from_unit) else (to_unit, from_unit)
    rate = rate_at(conn, tenant_id, cur, pts, at_us)
    debited, credited = quote(amount, rate, source, target)
    if debited == 0 or credited == 0:
        smallest = factor(rate, source, target).denominator
        raise InvalidArgument(
            f"{format_amount(amount, source)} converts to less than one step of {to_unit}; "
            f"convert at least {format_amount(smallest, source)}"
        )
    if credited > INT64_MAX:
        raise InvalidArgument(f"{format_amount(amount, source)} converts to more than int64 steps of {to_unit}")
    return debited, credited, rate


def convert(
    conn: Connection, tenant_id: int, conv_id: str, customer: str, amount: int, from_unit: str, to_unit: str,
    now_us: int,
) -> Conversion:  # fmt: skip
    _check_own_id("conversion", conv_id)
    source = resolve_unit(conn, tenant_id, from_unit)
    out_id, in_id = f"{conv_id}#out", f"{conv_id}#in"
    prior = load_transfers(conn, tenant_id, [out_id])
    at_us = prior[out_id].ts_us if out_id in prior else now_us
    debited, credited, rate = quote_conversion(conn, tenant_id, amount, from_unit, to_unit, at_us)
    src_wallet = get_or_create(conn, tenant_id, wallet_kind(from_unit), from_unit, customer)
    dst_wallet = get_or_create(conn, tenant_id, wallet_kind(to_unit), to_unit, customer)
    conv_src = get_or_create(conn, tenant_id, "conversion", from_unit, peer=to_unit)
    conv_dst = get_or_create(conn, tenant_id, "conversion", to_unit, peer=from_unit)
    batch = [
        Transfer(out_id, src_wallet, conv_src, debited, "convert", f"{from_unit}->{to_unit}", TransferFlags.LINKED,
                 at_us=at_us if prior else None),
        Transfer(in_id, conv_dst, dst_wallet, credited, "convert", f"{from_unit}->{to_unit}",
                 at_us=at_us if prior else None),
    ]  # fmt: skip
    results = apply_batch(conn, tenant_id, batch, now_us)
    for r in results:
        if r.result is Result.EXISTS_WITH_DIFFERENT_FIELD:
            raise ExistsWithDifferentBody(
                f"conversion {conv_id!r} already exists with a different {r.field}", r.field or ""
            )
        if r.result is Result.EXCEEDS_CREDITS:
            raise InsufficientFunds(
                f"{customer}'s {from_unit} wallet holds less than {format_amount(debited, source)}; top up first"
            )
    bad = [r for r in results if not r.ok and r.result is not Result.LINKED_EVENT_FAILED]
    if bad:
        raise InvalidTransfer(bad[0].message())
    created = results[0].result is Result.CREATED
    return Conversion(conv_id, from_unit, to_unit, amount, debited, credited, rate, created)
