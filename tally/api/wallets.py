"""The ledger: top-ups, grants, balances, transfers, history, conversions.

The ledger counts integer steps of a unit (cents, or a points unit's own scale) and names customers
by external id without knowing whether they exist; the API speaks decimal strings and is tenant
scoped. So every call here checks the customer exists in the caller's tenant (another tenant's is
NOT_FOUND), turns each decimal into steps of the unit it is in (too many places is INVALID_ARGUMENT,
never rounded), and tells the entitlement caches about every customer whose balances moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine, select

from invoicing.catalog import get_customer
from invoicing.ledger import Grant, Ledger, Result, StoredTransfer, Transfer, TransferFlags, TransferResult
from invoicing.ledger.account import Account, find_account, wallet_kind
from invoicing.ledger.errors import ExistsWithDifferentBody, LedgerError
from invoicing.ledger.grant import OWN_ID_BYTES_MAX, GrantInfo
from invoicing.ledger.tables import ledger_accounts
from invoicing.ledger.transfer import ID_BYTES_MAX, SYSTEM_PREFIX
from invoicing.ledger.unit import from_us, is_currency, to_us
from metering.errors import FailedPrecondition, InvalidArgument, NotFound
from metering.tenant import Principal
from rating.errors import InvalidQuantityError, RatingOverflowError
from rating.fixedpoint import to_scaled
from rating.unit import Unit
from tally.api.base import (
    ADMIN,
    ID_MAX,
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    READ,
    ApiBase,
    decimal_arg,
    decimal_str,
    instant,
    positive_id,
    required,
    rpc,
    timestamp,
)
from tally.v1 import billing_pb2 as pb

#: At most this many transfers per CreateTransfers call (TigerBeetle's batch size).
TRANSFERS_MAX = 8190
#: Transfer flags as named on the wire.
FLAGS = {
    "linked": TransferFlags.LINKED,
    "pending": TransferFlags.PENDING,
    "post_pending": TransferFlags.POST_PENDING,
    "void_pending": TransferFlags.VOID_PENDING,
}
#: The request field a refused transfer's result points at, when the ledger does not name one.
RESULT_FIELDS = {
    Result.ID_INVALID: "id",
    Result.ID_RESERVED: "id",
    Result.FLAGS_ARE_MUTUALLY_EXCLUSIVE: "flags",
    Result.AMOUNT_INVALID: "amount",
    Result.ACCOUNTS_MUST_BE_DIFFERENT: "credit_account_id",
    Result.DEBIT_ACCOUNT_NOT_FOUND: "debit_account_id",
    Result.CREDIT_ACCOUNT_NOT_FOUND: "credit_account_id",
    Result.ACCOUNTS_MUST_HAVE_THE_SAME_UNIT: "credit_account_id",
    Result.PENDING_ID_REQUIRED: "pending_id",
    Result.PENDING_ID_MUST_BE_EMPTY: "pending_id",
    Result.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER: "timeout_s",
    Result.TIMEOUT_INVALID: "timeout_s",
    Result.PENDING_TRANSFER_NOT_FOUND: "pending_id",
    Result.PENDING_TRANSFER_NOT_PENDING: "pending_id",
    Result.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT: "debit_account_id",
    Result.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT: "credit_account_id",
    Result.PENDING_TRANSFER_ALREADY_POSTED: "pending_id",
    Result.PENDING_TRANSFER_ALREADY_VOIDED: "pending_id",
    Result.PENDING_TRANSFER_EXPIRED: "pending_id",
    Result.EXCEEDS_PENDING_TRANSFER_AMOUNT: "amount",
    Result.EXCEEDS_CREDITS: "amount",
    Result.EXCEEDS_DEBITS: "amount",
    Result.OVERFLOWS_CREDITS: "amount",
    Result.OVERFLOWS_DEBITS: "amount",
}


# --- conversions ---------------------------------------------------------------------------------------------
class Units:
    """Units by code, resolved once per call (points units live in the tenant's table)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.known: dict[str, Unit] = {}

    def get(self, code: str, field: str = "unit") -> Unit:
        if code not in self.known:
            try:
                self.known[code] = self.ledger.unit(code)
            except NotFound as exc:
                raise NotFound(f"{field}: {exc}") from None
        return self.known[code]

    def text(self, steps: int, code: str) -> str:
        """Steps of a unit as an exact decimal string at the unit's scale ("12.50")."""
        return decimal_str(Decimal(steps).scaleb(-self.get(code).scale))

    def steps(self, text: str, code: str, field: str) -> int:
        """A positive decimal string as whole steps of the unit; more places than the unit has is refused."""
        value = decimal_arg(text, field, positive=True)
        assert value is not None  # allow_empty is False
        unit = self.get(code)
        try:
            return to_scaled(value, unit.scale, field)
        except InvalidQuantityError:
            raise InvalidArgument(f"{field}: {text} has more than {unit.scale} decimal places for {code}") from None
        except RatingOverflowError:
            raise InvalidArgument(f"{field}: {text} {code} is more than the ledger can hold") from None


def units_text(ledger: Ledger, steps: int, code: str) -> str:
    return Units(ledger).text(steps, code)


def _own_id(value: str, field: str, limit: int = OWN_ID_BYTES_MAX) -> str:
    """An idempotency key chosen by the client: the ledger reserves '~' (its own ids) and '#' (suffixes)."""
    required(value, field)
    if len(value.encode()) > limit:
        raise InvalidArgument(f"{field} is {len(value.encode())} bytes; at most {limit}")
    if value.startswith(SYSTEM_PREFIX) or "#" in value:
        raise InvalidArgument(f"{field} {value!r} may not start with {SYSTEM_PREFIX!r} or contain '#'")
    return value


def grant_pb(info: GrantInfo, units: Units) -> pb.Grant:
    g = info.grant
    return pb.Grant(
        grant_id=g.id,
        customer=g.customer,
        amount=units.text(g.amount, g.unit),
        unit=g.unit,
        kind=g.kind,
        priority=g.priority,
        effective_at=None if g.effective_at_us is None else timestamp(from_us(g.effective_at_us)),
        expires_at=None if g.expires_at_us is None else timestamp(from_us(g.expires_at_us)),
        applies_to=list(g.applies_to or ()),
        remaining=units.text(info.remaining, g.unit),
    )


def account_pb(a: Account, units: Units) -> pb.Account:
    return pb.Account(
        id=a.id,
        kind=a.kind,
        unit=a.unit,
        customer=a.customer,
        balance=units.text(a.balance, a.unit),
        debits_pending=units.text(a.debits_pending, a.unit),
        credits_pending=units.text(a.credits_pending, a.unit),
    )


@dataclass(frozen=True, slots=True)
class _Owner:
    unit: str
    customer: str


def _owners(engine: Engine, tenant_id: int, ids: Iterable[int]) -> dict[int, _Owner]:
    """Unit and customer of the tenant's accounts among `ids` (others are simply absent)."""
    wanted = sorted({i for i in ids if 0 < i <= ID_MAX})  # no other number can be an account id
    a = ledger_accounts.c
    out: dict[int, _Owner] = {}
    with engine.connect() as conn:
        for k in range(0, len(wanted), 900):
            rows = conn.execute(
                select(a.id, a.unit, a.customer).where(a.tenant_id == tenant_id, a.id.in_(wanted[k : k + 900]))
            )
            out.update({int(r.id): _Owner(r.unit, r.customer) for r in rows})
    return out


class WalletRpcs(ApiBase):
    def _ledger(self, principal: Principal) -> Ledger:
        return Ledger(self.engine, principal.tenant_id)

    def _customer(self, principal: Principal, external_id: str, field: str = "customer") -> str:
        """The customer's external id, once it is known to exist in the caller's tenant."""
        return get_customer(self.engine, principal.tenant_id, required(external_id, field)).external_id

    def _billable(self, principal: Principal, customer: str, unit: str, field: str) -> None:
        """Money put in a wallet must be able to pay the customer's invoices: a currency other than the
        one the customer is billed in would sit there for ever (points units are the tenant's own)."""
        if not is_currency(unit):
            return
        billed_in = get_customer(self.engine, principal.tenant_id, customer).currency
        if unit != billed_in:
            raise FailedPrecondition(
                f"{field}: customer {customer!r} is billed in {billed_in}, so {unit} could never pay an invoice; "
                f"use {billed_in} (or a points unit)"
            )

    # --- wallets ---------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def TopUpWallet(self, principal: Principal, request: pb.TopUpWalletRequest) -> pb.TopUpWalletResponse:
        top_up_id = _own_id(request.top_up_id, "top_up_id", ID_BYTES_MAX)
        customer = self._customer(principal, request.customer)
        ledger = self._ledger(principal)
        units = Units(ledger)
        unit = required(request.unit, "unit")
        amount = units.steps(request.amount, unit, "amount")
        self._billable(principal, customer, unit, "unit")
        if len(request.reference.encode()) > 256:
            raise InvalidArgument(f"reference is {len(request.reference.encode())} bytes; at most 256")
        self._check_retry(principal, ledger, top_up_id, customer, amount, unit, request.reference)
        try:
            result = ledger.top_up(top_up_id, customer, amount, unit, request.reference)
        except ExistsWithDifferentBody as exc:  # a concurrent first use of the id, with another body
            raise ExistsWithDifferentBody(
                f"top_up_id {top_up_id!r} was already used for a different movement ({exc.field} differs); "
                "resend the same request, or use a new top_up_id for a new top-up",
                exc.field,
            ) from None
        if result.result is Result.CREATED:
            self.changed(principal.tenant_id, customer)
        with self.engine.connect() as conn:
            wallet = find_account(conn, principal.tenant_id, wallet_kind(unit), unit, customer)
        balance = wallet.balance if wallet is not None else 0
        return pb.TopUpWalletResponse(
            result=result.result.value, balance=pb.UnitAmount(unit=unit, amount=units.text(balance, unit))
        )

    def _check_retry(
        self, principal: Principal, ledger: Ledger, top_up_id: str, customer: str, amount: int, unit: str, ref: str
    ) -> None:
        """Refuse a reused top_up_id before the ledger opens a wallet for a top-up that will not happen."""
        prior = ledger.lookup([top_up_id]).get(top_up_id)
        if prior is None:
            return
        owner = _owners(self.engine, principal.tenant_id, [prior.credit_account_id]).get(prior.credit_account_id)
        field, differs = (
            ("top_up_id", "kind of movement (it is not a top-up)") if prior.code != "top_up"
            else ("unit", f"unit (it was {prior.unit})") if prior.unit != unit
            else ("customer", "customer") if owner is None or owner.customer != customer
            else ("amount", f"amount (it was {units_text(ledger, prior.amount, unit)})") if prior.amount != amount
            else ("reference", "reference") if prior.reference != (ref or customer)
            else ("", "")
        )  # fmt: skip
        if field:
            raise ExistsWithDifferentBody(
                f"top_up_id {top_up_id!r} was already used with a different {differs}; resend the same request, "
                "or use a new top_up_id for a new top-up",
                field,
            )

    # --- grants ----------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def CreateGrant(self, principal: Principal, request: pb.CreateGrantRequest) -> pb.Grant:
        g = request.grant
        grant_id = _own_id(g.grant_id, "grant.grant_id")
        customer = self._customer(principal, g.customer, "grant.customer")
        ledger = self._ledger(principal)
        units = Units(ledger)
        unit = required(g.unit, "grant.unit")
        units.get(unit, "grant.unit")
        amount = units.steps(g.amount, unit, "grant.amount")
        self._billable(principal, customer, unit, "grant.unit")
        kind = g.kind or "paid"
        if kind not in ("paid", "promotional"):
            raise InvalidArgument(f"grant.kind {g.kind!r}: paid or promotional")
        if g.priority < 0:
            raise InvalidArgument(f"grant.priority must be 0 or more (0 = the default, 100), got {g.priority}")
        applies = list(g.applies_to)
        for i, code in enumerate(applies):
            if not code:
                raise InvalidArgument(f"grant.applies_to[{i}] is empty; name a charge code")
        try:
            effective = instant(g, "effective_at")
            expires = instant(g, "expires_at")
        except InvalidArgument as exc:
            raise InvalidArgument(f"grant.{exc}") from None
        if effective is not None and expires is not None and expires <= effective:
            raise InvalidArgument("grant.expires_at must be after grant.effective_at")
        info = ledger.grant(
            Grant(
                grant_id, customer, amount, unit, "promotional" if kind == "promotional" else "paid",
                g.priority if g.HasField("priority") else 100, None if effective is None else to_us(effective),
                None if expires is None else to_us(expires), tuple(applies) or None,
            )
        )  # fmt: skip
        if info.created:
            self.changed(principal.tenant_id, customer)
        return grant_pb(info, units)

    @rpc(READ)
    def ListGrants(self, principal: Principal, request: pb.ListGrantsRequest) -> pb.ListGrantsResponse:
        customer = self._customer(principal, request.customer)
        ledger = self._ledger(principal)
        units = Units(ledger)
        found = ledger.grants(customer)  # in drawing order
        return pb.ListGrantsResponse(grants=[grant_pb(info, units) for info in found])

    # --- balances and history --------------------------------------------------------------------------------
    @rpc(READ)
    def GetBalances(self, principal: Principal, request: pb.GetBalancesRequest) -> pb.GetBalancesResponse:
        customer = self._customer(principal, request.customer)
        ledger = self._ledger(principal)
        units = Units(ledger)
        totals = [
            pb.UnitBalance(
                unit=t.unit,
                balance=units.text(t.balance, t.unit),
                available=units.text(t.available, t.unit),
                pending_in=units.text(t.pending_in, t.unit),
            )
            for t in ledger.customer_totals(customer)
        ]
        accounts = [account_pb(a, units) for a in ledger.accounts(customer)]
        return pb.GetBalancesResponse(totals=totals, accounts=accounts)

    @rpc(READ)
    def ListAccountHistory(
        self, principal: Principal, request: pb.ListAccountHistoryRequest
    ) -> pb.ListAccountHistoryResponse:
        positive_id(request.account_id, "account_id")
        if not 0 <= request.limit <= PAGE_SIZE_MAX:
            raise InvalidArgument(f"limit must be 0..{PAGE_SIZE_MAX} (0 = {PAGE_SIZE_DEFAULT}), got {request.limit}")
        ledger = self._ledger(principal)
        units = Units(ledger)
        account = ledger.account(request.account_id)  # NOT_FOUND for another tenant's account
        lines = ledger.history(account.id, request.limit or PAGE_SIZE_DEFAULT)
        return pb.ListAccountHistoryResponse(
            lines=[
                pb.HistoryLine(
                    transfer_id=ln.transfer.id,
                    change=units.text(ln.change, account.unit),
                    running_balance=units.text(ln.running_balance, account.unit),
                    code=ln.transfer.code,
                    at=timestamp(from_us(ln.transfer.ts_us)),
                )
                for ln in lines
            ]
        )

    # --- transfers -------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def CreateTransfers(self, principal: Principal, request: pb.CreateTransfersRequest) -> pb.CreateTransfersResponse:
        given = request.transfers
        if not given:
            raise InvalidArgument(f"transfers is required: 1..{TRANSFERS_MAX} transfers")
        if len(given) > TRANSFERS_MAX:
            raise InvalidArgument(f"transfers: {len(given)} given; at most {TRANSFERS_MAX} per call")
        ledger = self._ledger(principal)
        units = Units(ledger)
        owners = _owners(
            self.engine, principal.tenant_id, [x for t in given for x in (t.debit_account_id, t.credit_account_id)]
        )
        pending = ledger.lookup([t.pending_id for t in given if t.pending_id])
        earlier: dict[str, pb.Transfer] = {}
        batch = []
        for k, t in enumerate(given):
            batch.append(self._transfer(k, t, owners, pending, earlier, units))
            earlier.setdefault(t.id, t)
        results = ledger.create_transfers(batch)
        touched = {
            owners[aid].customer
            for t, r in zip(batch, results, strict=True)
            if r.result is Result.CREATED
            for aid in self._accounts(t, pending)
            if aid in owners and owners[aid].customer
        }
        for customer in sorted(touched):
            self.changed(principal.tenant_id, customer)
        return pb.CreateTransfersResponse(results=[_result_pb(r) for r in results])

    @staticmethod
    def _accounts(t: Transfer, pending: dict[str, StoredTransfer]) -> tuple[int, ...]:
        """The accounts a transfer moves: its own, or for a post/void those of the pending transfer."""
        if t.pending_id and t.pending_id in pending:
            p = pending[t.pending_id]
            return (p.debit_account_id, p.credit_account_id)
        return tuple(a for a in (t.debit_account_id, t.credit_account_id) if a)

    def _transfer(
        self,
        k: int,
        t: pb.Transfer,
        owners: dict[int, _Owner],
        pending: dict[str, StoredTransfer],
        earlier: dict[str, pb.Transfer],
        units: Units,
    ) -> Transfer:
        """A wire transfer as a ledger one. Malformed input fails the whole call (nothing is written);
        what only the ledger can judge (ids, balances, pending state) comes back as that transfer's result."""
        where = f"transfers[{k}]"
        flags = TransferFlags.NONE
        for j, name in enumerate(t.flags):
            if name not in FLAGS:
                raise InvalidArgument(f"{where}.flags[{j}]: {name!r} is not a flag; one of {', '.join(FLAGS)}")
            flags |= FLAGS[name]
        for name in ("debit_account_id", "credit_account_id", "timeout_s"):
            if getattr(t, name) < 0:
                raise InvalidArgument(f"{where}.{name} must not be negative, got {getattr(t, name)}")
        for name in ("debit_account_id", "credit_account_id"):
            if getattr(t, name) > ID_MAX:
                raise InvalidArgument(f"{where}.{name} must be an account id up to {ID_MAX}, got {getattr(t, name)}")
        resolving = bool(flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING))
        amount: int | None = None
        debit = t.debit_account_id or None
        if t.amount or not resolving:  # a post may leave the amount out (all of it); a void always does
            unit = self._unit_of(t, owners, pending, earlier)
            if unit is not None:
                amount = units.steps(t.amount, unit, f"{where}.amount")
            elif resolving:  # without the pending transfer the amount means nothing: refuse rather than guess
                raise NotFound(f"{where}.pending_id {t.pending_id!r} is not a pending transfer of this tenant")
            else:
                # Neither account is the tenant's: the ledger reports debit_account_not_found for this
                # transfer (and fails its chain) without ever reading an amount whose unit is unknown.
                decimal_arg(t.amount, f"{where}.amount", positive=True)
                debit, amount = None, 1
        return Transfer(
            id=t.id,
            debit_account_id=debit,
            credit_account_id=t.credit_account_id or None,
            amount=amount,
            code=t.code or ("" if resolving else "transfer"),
            reference=t.reference,
            flags=flags,
            pending_id=t.pending_id or None,
            timeout_s=t.timeout_s,
        )

    @staticmethod
    def _unit_of(
        t: pb.Transfer, owners: dict[int, _Owner], pending: dict[str, StoredTransfer], earlier: dict[str, pb.Transfer]
    ) -> str | None:
        """The unit an amount is written in: the debit account's, else the credit account's, else (for a
        post) the pending transfer's, stored or earlier in this same request."""
        for aid in (t.debit_account_id, t.credit_account_id):
            if aid in owners:
                return owners[aid].unit
        if not t.pending_id:
            return None
        if t.pending_id in pending:
            return pending[t.pending_id].unit
        first = earlier.get(t.pending_id)
        if first is None or first.pending_id:
            return None
        return next((owners[a].unit for a in (first.debit_account_id, first.credit_account_id) if a in owners), None)

    # --- conversions -----------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def ConvertCredits(self, principal: Principal, request: pb.ConvertCreditsRequest) -> pb.ConvertCreditsResponse:
        conversion_id = _own_id(request.conversion_id, "conversion_id")
        customer = self._customer(principal, request.customer)
        ledger = self._ledger(principal)
        units = Units(ledger)
        source = required(request.from_unit, "from_unit")
        target = required(request.to_unit, "to_unit")
        units.get(source, "from_unit")
        units.get(target, "to_unit")
        if (units.get(source).kind == "currency") == (units.get(target).kind == "currency"):
            raise InvalidArgument(
                f"from_unit {source} and to_unit {target}: a conversion is between a currency and a points unit"
            )
        amount = units.steps(request.amount, source, "amount")
        try:
            conv = ledger.convert(conversion_id, customer, amount, source, target)
        except InvalidArgument as exc:
            if isinstance(exc, LedgerError):
                raise
            raise InvalidArgument(f"amount: {exc}") from None  # too small or too large to convert
        if conv.created:
            self.changed(principal.tenant_id, customer)
        return pb.ConvertCreditsResponse(
            debited=pb.UnitAmount(unit=source, amount=units.text(conv.debited, source)),
            credited=pb.UnitAmount(unit=target, amount=units.text(conv.credited, target)),
            rate=decimal_str(conv.rate.rate),
            result="created" if conv.created else "exists",
            left_in_source=pb.UnitAmount(unit=source, amount=units.text(conv.left_in_source, source)),
        )


def _result_pb(r: TransferResult) -> pb.TransferResult:
    if r.result is Result.CREATED:
        text = "ok"
    elif r.result is Result.EXISTS_WITH_DIFFERENT_FIELD:
        text = f"exists_with_different_{r.field or 'field'}"
    else:
        text = r.result.value
    return pb.TransferResult(index=r.index, id=r.id, result=text, field=r.field or RESULT_FIELDS.get(r.result, ""))


__all__ = ["Units", "WalletRpcs", "account_pb", "grant_pb"]
