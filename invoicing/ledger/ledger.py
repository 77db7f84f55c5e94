"""`Ledger`: the one entry point for a tenant's ledger; every write is one transaction.

Times are timezone-aware datetimes at this boundary (µs integers inside); amounts are exact
integers in the unit's smallest step (use `amount(text, unit)` to turn "12.50" into 1250). The
clock is injectable so tests and replays decide what "now" is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine

from invoicing.ledger import account as _account
from invoicing.ledger import balance as _balance
from invoicing.ledger import conversion as _conversion
from invoicing.ledger import grant as _grant
from invoicing.ledger import transfer as _transfer
from invoicing.ledger import unit as _unit
from invoicing.ledger.account import Account
from invoicing.ledger.errors import (
    AccountNotFound,
    BalanceOverflow,
    ExistsWithDifferentBody,
    InsufficientFunds,
    InvalidTransfer,
    PendingNotOpen,
    UnitMismatch,
)
from invoicing.ledger.transfer import Result, StoredTransfer, Transfer, TransferResult
from rating.rounding import RoundingMode
from rating.unit import Unit

_FAILED_PRECONDITION = {
    Result.EXCEEDS_CREDITS: InsufficientFunds,
    Result.EXCEEDS_DEBITS: InsufficientFunds,
    Result.OVERFLOWS_CREDITS: BalanceOverflow,
    Result.OVERFLOWS_DEBITS: BalanceOverflow,
    Result.PENDING_TRANSFER_ALREADY_POSTED: PendingNotOpen,
    Result.PENDING_TRANSFER_ALREADY_VOIDED: PendingNotOpen,
    Result.PENDING_TRANSFER_EXPIRED: PendingNotOpen,
    Result.ACCOUNTS_MUST_HAVE_THE_SAME_UNIT: UnitMismatch,
    Result.DEBIT_ACCOUNT_NOT_FOUND: AccountNotFound,
    Result.CREDIT_ACCOUNT_NOT_FOUND: AccountNotFound,
}


def raise_for(result: TransferResult) -> None:
    """Turn a failed result into the domain exception a single-transfer caller expects."""
    if result.ok:
        return
    if result.result is Result.EXISTS_WITH_DIFFERENT_FIELD:
        raise ExistsWithDifferentBody(result.message(), result.field or "")
    raise _FAILED_PRECONDITION.get(result.result, InvalidTransfer)(result.message())


class Ledger:
    def __init__(self, engine: Engine, tenant_id: int, clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.tenant_id = tenant_id
        self._clock = clock

    def now_us(self) -> int:
        return _unit.to_us(self._clock()) if self._clock is not None else _unit.now_us()

    def _write(self, fn: Callable[[Connection], object]) -> object:
        return _transfer.write_transaction(self.engine, fn)

    def _read(self) -> Connection:
        return self.engine.connect()

    # -- units and rates ---------------------------------------------------------------------------
    def define_points_unit(self, code: str, scale: int, name: str = "") -> Unit:
        return _transfer.write_transaction(
            self.engine, lambda c: _unit.define_points_unit(c, self.tenant_id, code, scale, name)
        )

    def unit(self, code: str) -> Unit:
        with self._read() as c:
            return _unit.resolve_unit(c, self.tenant_id, code)

    def points_units(self, after: str | None = None, limit: int | None = None) -> list[_unit.PointsUnit]:
        with self._read() as c:
            return _unit.list_points_units(c, self.tenant_id, after, limit)

    def amount(self, value: str | Decimal | int, unit: str) -> int:
        return _unit.parse_amount(value, self.unit(unit))

    def format(self, scaled: int, unit: str) -> str:
        return _unit.format_amount(scaled, self.unit(unit))

    def set_rate(
        self, currency: str, points_unit: str, rate: Decimal | str, valid_from: datetime,
        valid_to: datetime | None = None, rounding: RoundingMode = RoundingMode.DOWN,
    ) -> _unit.Rate:  # fmt: skip
        start, end = _unit.to_us(valid_from), None if valid_to is None else _unit.to_us(valid_to)
        return _transfer.write_transaction(
            self.engine,
            lambda c: _unit.set_rate(c, self.tenant_id, currency, points_unit, rate, start, end, rounding),
        )

    def rate_at(self, currency: str, points_unit: str, at: datetime) -> _unit.Rate:
        with self._read() as c:
            return _unit.rate_at(c, self.tenant_id, currency, points_unit, _unit.to_us(at))

    def rates(
        self, currency: str | None = None, points_unit: str | None = None, after: _unit.RateKey | None = None,
        limit: int | None = None,
    ) -> list[_unit.Rate]:  # fmt: skip
        with self._read() as c:
            return _unit.list_rates(c, self.tenant_id, currency, points_unit, after, limit)

    # -- accounts -------------------------------------------------------------------------------------
    def wallet(self, customer: str, unit: str, promotional: bool = False) -> int:
        """The customer's wallet in `unit` (cash, promo, or points), created on first use."""
        kind = _account.wallet_kind(unit, promotional)
        return _transfer.write_transaction(
            self.engine, lambda c: _account.get_or_create(c, self.tenant_id, kind, unit, customer)
        )

    def system_account(self, kind: str, unit: str, peer: str = "") -> int:
        return _transfer.write_transaction(
            self.engine, lambda c: _account.get_or_create(c, self.tenant_id, kind, unit, "", peer)
        )

    def account(self, account_id: int) -> Account:
        with self._read() as c:
            return _account.get_account(c, self.tenant_id, account_id)

    def accounts(self, customer: str | None = None) -> list[Account]:
        with self._read() as c:
            return _account.list_accounts(c, self.tenant_id, customer)

    # -- transfers ------------------------------------------------------------------------------------
    def create_transfers(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        """One result per transfer, in order (TigerBeetle semantics; see `invoicing.ledger.transfer`)."""
        return _transfer.create_transfers(self.engine, self.tenant_id, transfers, self.now_us())

    def transfer(self, t: Transfer) -> TransferResult:
        """A single transfer; EXISTS (same body) is success, anything else failed raises."""
        result = self.create_transfers([t])[0]
        raise_for(result)
        return result

    def lookup(self, ids: Sequence[str]) -> dict[str, StoredTransfer]:
        with self._read() as c:
            return _transfer.load_transfers(c, self.tenant_id, ids)

    def expire_pending(self, now: datetime | None = None) -> list[str]:
        at = self.now_us() if now is None else _unit.to_us(now)
        return _transfer.expire_pending(self.engine, self.tenant_id, at)

    def top_up(self, top_up_id: str, customer: str, amount: int, unit: str, reference: str = "") -> TransferResult:
        """Cash in: money paid from outside into the customer's cash (or points) wallet."""

        def run(c: Connection) -> TransferResult:
            dst = _account.get_or_create(c, self.tenant_id, _account.wallet_kind(unit), unit, customer)
            src = _account.get_or_create(c, self.tenant_id, "cash_in", unit)
            batch = [Transfer(top_up_id, src, dst, amount, "top_up", reference or customer)]
            result = _transfer.apply_batch(c, self.tenant_id, batch, self.now_us())[0]
            raise_for(result)  # inside the transaction: a refused top-up leaves no new wallet behind
            return result

        return _transfer.write_transaction(self.engine, run)

    # -- grants -----------------------------------------------------------------------------------------
    def grant(self, g: _grant.Grant) -> _grant.GrantInfo:
        return _transfer.write_transaction(
            self.engine, lambda c: _grant.create_grant(c, self.tenant_id, g, self.now_us())
        )

    def grants(self, customer: str | None = None) -> list[_grant.GrantInfo]:
        with self._read() as c:
            return _grant.list_grants(c, self.tenant_id, customer)

    def spend(
        self, spend_id: str, customer: str, amount: int, unit: str, charge: str, partial: bool = False
    ) -> _grant.Spend:
        return _transfer.write_transaction(
            self.engine,
            lambda c: _grant.spend(c, self.tenant_id, spend_id, customer, amount, unit, charge, self.now_us(), partial),
        )

    def expire_grants(self, now: datetime | None = None) -> list[tuple[str, int]]:
        at = self.now_us() if now is None else _unit.to_us(now)
        return _transfer.write_transaction(self.engine, lambda c: _grant.expire_grants(c, self.tenant_id, at))

    # -- conversion ---------------------------------------------------------------------------------------
    def convert(self, conv_id: str, customer: str, amount: int, from_unit: str, to_unit: str) -> _conversion.Conversion:
        return _transfer.write_transaction(
            self.engine,
            lambda c: _conversion.convert(
                c, self.tenant_id, conv_id, customer, amount, from_unit, to_unit, self.now_us()
            ),
        )

    def quote(
        self, amount: int, from_unit: str, to_unit: str, at: datetime | None = None
    ) -> tuple[int, int, _unit.Rate]:
        """(debited, credited, rate) that `convert` of `amount` would move at `at` (default now); nothing moves."""
        at_us = self.now_us() if at is None else _unit.to_us(at)
        with self._read() as c:
            return _conversion.quote_conversion(c, self.tenant_id, amount, from_unit, to_unit, at_us)

    # -- queries -------------------------------------------------------------------------------------------
    def balance(self, account_id: int, as_of: datetime | None = None) -> _balance.Balance:
        with self._read() as c:
            return _balance.balance(c, self.tenant_id, account_id, None if as_of is None else _unit.to_us(as_of))

    def history(self, account_id: int, limit: int | None = None) -> list[_balance.HistoryLine]:
        with self._read() as c:
            return _balance.history(c, self.tenant_id, account_id, limit)

    def customer_totals(self, customer: str) -> list[_balance.UnitTotal]:
        with self._read() as c:
            return _balance.customer_totals(c, self.tenant_id, customer)
