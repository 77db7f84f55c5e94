"""Credit grants and spending them.

A grant is money put into a customer's hands under conditions (priority, effective date, expiry,
which charges it may pay for). Each grant gets its own sub-account (kind "grant", peer = grant
id), so its remaining amount *is* an account balance: tracked by the same transfers, checked by the
same flags, visible in the same history. Granting is a transfer from cash_in (paid) or promotions
(promotional) into that sub-account, at the grant's effective time.

Spending draws from eligible grants in order — priority (lower first), then earliest expiry
(never-expiring last), then earliest effective, then grant id — and then from the customer's plain
wallets (promo, then cash; or the points wallet), each draw a transfer to revenue, all linked so a
spend is all-or-nothing. The accounts are locked before the amounts are chosen, so two concurrent
spends can never both draw the same remainder.

Expiry moves whatever is left (less any reservation still pending) to the expiry account by a
transfer dated at the grant's expiry time, and announces each such lapse as a `grant.expired`
event in the same transaction (so a rerun of the sweep, which moves nothing, announces nothing).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, select

from invoicing.events import NewEvent, emit
from invoicing.ledger.account import get_or_create, wallet_kind
from invoicing.ledger.errors import ExistsWithDifferentBody, InsufficientFunds, InvalidTransfer
from invoicing.ledger.tables import ledger_accounts, ledger_grants, ledger_transfers
from invoicing.ledger.transfer import (
    SYSTEM_PREFIX,
    Result,
    StoredTransfer,
    Transfer,
    TransferFlags,
    apply_batch,
    stored_from_row,
)
from invoicing.ledger.unit import resolve_unit
from metering.errors import InvalidArgument
from rating.fixedpoint import INT64_MAX, from_scaled

GrantKind = Literal["paid", "promotional"]
#: Grant and spend ids leave room for the suffixes of the transfers they write.
OWN_ID_BYTES_MAX = 100


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    customer: str
    amount: int
    unit: str
    kind: GrantKind = "paid"
    priority: int = 100
    effective_at_us: int | None = None
    expires_at_us: int | None = None
    applies_to: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class GrantInfo:
    grant: Grant
    account_id: int
    remaining: int
    created: bool = False


@dataclass(frozen=True, slots=True)
class Draw:
    grant_id: str | None  # None = a plain wallet
    account_id: int
    amount: int


@dataclass(frozen=True, slots=True)
class Spend:
    id: str
    unit: str
    charge: str
    draws: tuple[Draw, ...]
    created: bool

    @property
    def total(self) -> int:
        return sum(d.amount for d in self.draws)


def _check_own_id(what: str, ident: str) -> None:
    if not ident or len(ident.encode()) > OWN_ID_BYTES_MAX or ident.startswith(SYSTEM_PREFIX) or "#" in ident:
        raise InvalidArgument(
            f"{what} id {ident!r}: 1..{OWN_ID_BYTES_MAX} bytes, no '#', not starting with {SYSTEM_PREFIX!r}"
        )


def _applies_json(applies_to: tuple[str, ...] | None) -> str | None:
    return None if applies_to is None else json.dumps(sorted(set(applies_to)), separators=(",", ":"))


def _grant_from_row(r: object) -> Grant:
    m = r._mapping  # type: ignore[attr-defined]
    applies = m["applies_to"]
    return Grant(
        m["grant_id"], m["customer"], int(m["amount"]), m["unit"], m["kind"], int(m["priority"]),
        int(m["effective_at_us"]), None if m["expires_at_us"] is None else int(m["expires_at_us"]),
        None if applies is None else tuple(json.loads(applies)),
    )  # fmt: skip


def create_grant(conn: Connection, tenant_id: int, g: Grant, now_us: int) -> GrantInfo:
    _check_own_id("grant", g.id)
    if g.kind not in ("paid", "promotional"):
        raise InvalidArgument(f"grant kind {g.kind!r}: paid or promotional")
    if isinstance(g.amount, bool) or not isinstance(g.amount, int) or not 0 < g.amount <= INT64_MAX:
        raise InvalidArgument(f"grant amount must be 1..{INT64_MAX} in the unit's smallest step")
    effective = g.effective_at_us if g.effective_at_us is not None else now_us
    if g.expires_at_us is not None and g.expires_at_us <= effective:
        raise InvalidArgument("a grant must expire after it becomes effective")
    norm = Grant(
        g.id, g.customer, g.amount, g.unit, g.kind, g.priority, effective, g.expires_at_us,
        None if g.applies_to is None else tuple(sorted(set(g.applies_to))),
    )  # fmt: skip
    c = ledger_grants.c
    row = conn.execute(select(ledger_grants).where(c.tenant_id == tenant_id, c.grant_id == g.id)).first()
    if row is not None:
        old = _grant_from_row(row)
        for name in ("customer", "amount", "unit", "kind", "priority", "expires_at_us", "applies_to"):
            if getattr(old, name) != getattr(norm, name):
                raise ExistsWithDifferentBody(f"grant {g.id!r} already exists with a different {name}", name)
        if g.effective_at_us is not None and old.effective_at_us != g.effective_at_us:
            raise ExistsWithDifferentBody(
                f"grant {g.id!r} already exists with a different effective_at", "effective_at"
            )
        acct = conn.execute(select(ledger_accounts).where(ledger_accounts.c.id == row.account_id)).one()
        return GrantInfo(old, int(row.account_id), int(acct.credits_posted) - int(acct.debits_posted), False)
    resolve_unit(conn, tenant_id, g.unit)
    account_id = get_or_create(conn, tenant_id, "grant", g.unit, g.customer, peer=g.id)
    source = get_or_create(conn, tenant_id, "cash_in" if g.kind == "paid" else "promotions", g.unit)
    conn.execute(
        ledger_grants.insert().values(
            tenant_id=tenant_id, grant_id=g.id, customer=g.customer, kind=g.kind, unit=g.unit,
            account_id=account_id, amount=g.amount, priority=g.priority, effective_at_us=effective,
            expires_at_us=g.expires_at_us, applies_to=_applies_json(g.applies_to), created_at_us=now_us,
        )
    )  # fmt: skip
    results = apply_batch(
        conn,
        tenant_id,
        [Transfer(f"grant:{g.id}", source, account_id, g.amount, "grant", g.customer, at_us=effective)],
        now_us,
    )
    if not results[0].ok:
        raise InvalidTransfer(results[0].message())
    return GrantInfo(norm, account_id, g.amount, True)


def list_grants(conn: Connection, tenant_id: int, customer: str | None = None) -> list[GrantInfo]:
    """Grants per customer in the order a spend draws them (priority, then earliest expiry, ...)."""
    c = ledger_grants.c
    a = ledger_accounts.c
    stmt = (
        select(ledger_grants, a.credits_posted, a.debits_posted)
        .join(ledger_accounts, a.id == c.account_id)
        .where(c.tenant_id == tenant_id)
        .order_by(c.customer, c.priority, c.grant_id)
    )
    if customer is not None:
        stmt = stmt.where(c.customer == customer)
    out = [
        GrantInfo(_grant_from_row(r), int(r.account_id), int(r.credits_posted) - int(r.debits_posted))
        for r in conn.execute(stmt)
    ]
    out.sort(key=lambda info: (info.grant.customer, _order_key(info.grant)))
    return out


def _order_key(g: Grant) -> tuple[int, int, int, int, str]:
    never = g.expires_at_us is None
    return (g.priority, 1 if never else 0, g.expires_at_us or 0, g.effective_at_us or 0, g.id)


def eligible_grants(
    conn: Connection, tenant_id: int, customer: str, unit: str, charge: str, at_us: int
) -> list[tuple[Grant, int]]:
    """Grants of the customer in `unit` that may pay `charge` at `at_us`, in draw order, with their account ids."""
    c = ledger_grants.c
    rows = conn.execute(
        select(ledger_grants).where(
            c.tenant_id == tenant_id, c.customer == customer, c.unit == unit, c.effective_at_us <= at_us
        )
    )
    out = []
    for r in rows:
        g = _grant_from_row(r)
        if g.expires_at_us is not None and g.expires_at_us <= at_us:
            continue
        if g.applies_to is not None and charge not in g.applies_to:
            continue
        out.append((g, int(r.account_id)))
    out.sort(key=lambda pair: _order_key(pair[0]))
    return out


def _locked_available(conn: Connection, ids: list[int]) -> dict[int, int]:
    a = ledger_accounts.c
    rows = conn.execute(
        select(a.id, a.credits_posted, a.debits_posted, a.debits_pending)
        .where(a.id.in_(sorted(set(ids))))
        .order_by(a.id)
        .with_for_update()
    )
    return {int(r.id): int(r.credits_posted) - int(r.debits_posted) - int(r.debits_pending) for r in rows}


def _existing_spend(conn: Connection, tenant_id: int, spend_id: str) -> list[StoredTransfer]:
    t = ledger_transfers.c
    rows = conn.execute(
        select(ledger_transfers)
        .where(t.tenant_id == tenant_id, t.transfer_id >= f"{spend_id}#", t.transfer_id < f"{spend_id}$")
        .order_by(t.transfer_id)
    )
    found = [stored_from_row(r) for r in rows]
    return sorted(found, key=lambda s: int(s.id.rsplit("#", 1)[1]))


def spend(
    conn: Connection,
    tenant_id: int,
    spend_id: str,
    customer: str,
    amount: int,
    unit: str,
    charge: str,
    now_us: int,
    partial: bool = False,
) -> Spend:
    """Draw `amount` for `charge` from the customer's eligible grants then wallets (see module docstring).

    `partial=True` draws what is available up to `amount` (what invoicing wants when applying credits to
    an invoice); otherwise a shortfall raises InsufficientFunds and nothing moves. Retrying `spend_id`
    returns the draws already made.
    """
    _check_own_id("spend", spend_id)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= INT64_MAX:
        raise InvalidArgument(f"spend amount must be 1..{INT64_MAX} in the unit's smallest step")
    revenue = get_or_create(conn, tenant_id, "revenue", unit)
    prior = _existing_spend(conn, tenant_id, spend_id)
    if prior:
        return _replay(conn, tenant_id, spend_id, prior, customer, amount, unit, charge, revenue, partial)
    candidates: list[tuple[str | None, int]] = [
        (g.id, aid) for g, aid in eligible_grants(conn, tenant_id, customer, unit, charge, now_us)
    ]
    kinds = ("points",) if wallet_kind(unit) == "points" else ("promo", "cash")
    for kind in kinds:
        candidates.append((None, get_or_create(conn, tenant_id, kind, unit, customer)))
    available = _locked_available(conn, [aid for _, aid in candidates])
    draws: list[Draw] = []
    left = amount
    for gid, aid in candidates:
        take = min(left, max(0, available.get(aid, 0)))
        if take:
            draws.append(Draw(gid, aid, take))
            left -= take
        if not left:
            break
    if left and not partial:
        raise InsufficientFunds(
            f"{customer} has {amount - left} of {amount} available in {unit} for {charge!r}; "
            "top up or grant credits, or spend with partial=True"
        )
    batch = [
        Transfer(f"{spend_id}#{k}", d.account_id, revenue, d.amount, "spend", charge,
                 TransferFlags.LINKED if k < len(draws) - 1 else TransferFlags.NONE)
        for k, d in enumerate(draws)
    ]  # fmt: skip
    if batch:
        results = apply_batch(conn, tenant_id, batch, now_us)
        failed = [r for r in results if not r.ok and r.result.value != "linked_event_failed"]
        if failed:
            raise InvalidTransfer(failed[0].message())
    return Spend(spend_id, unit, charge, tuple(draws), True)


def _replay(
    conn: Connection,
    tenant_id: int,
    spend_id: str,
    prior: list[StoredTransfer],
    customer: str,
    amount: int,
    unit: str,
    charge: str,
    revenue: int,
    partial: bool,
) -> Spend:
    total = sum(s.amount for s in prior)
    if prior[0].unit != unit:
        raise ExistsWithDifferentBody(f"spend {spend_id!r} already exists in {prior[0].unit}", "unit")
    if prior[0].reference != charge:
        raise ExistsWithDifferentBody(f"spend {spend_id!r} already exists for charge {prior[0].reference!r}", "charge")
    if prior[0].credit_account_id != revenue:
        raise ExistsWithDifferentBody(f"spend {spend_id!r} already exists with a different unit", "unit")
    a = ledger_accounts.c
    owners = {r.customer for r in conn.execute(select(a.customer).where(a.id.in_({s.debit_account_id for s in prior})))}
    if owners != {customer}:
        raise ExistsWithDifferentBody(f"spend {spend_id!r} already exists for another customer", "customer")
    if total > amount or (total != amount and not partial):
        raise ExistsWithDifferentBody(f"spend {spend_id!r} already exists for amount {total}", "amount")
    peers = {
        int(r.id): r.peer
        for r in conn.execute(select(a.id, a.peer, a.kind).where(a.id.in_({s.debit_account_id for s in prior})))
        if r.kind == "grant"
    }
    draws = tuple(Draw(peers.get(s.debit_account_id), s.debit_account_id, s.amount) for s in prior)
    return Spend(spend_id, unit, charge, draws, False)


def expire_grants(conn: Connection, tenant_id: int, now_us: int) -> list[tuple[str, int]]:
    """Move the remainder of every grant expired at `now_us` to the expiry account; returns (grant, amount)."""
    c = ledger_grants.c
    rows = conn.execute(
        select(c.grant_id, c.customer, c.account_id, c.unit, c.expires_at_us)
        .where(c.tenant_id == tenant_id, c.expires_at_us.is_not(None), c.expires_at_us <= now_us)
        .order_by(c.expires_at_us, c.grant_id)
    ).all()
    if not rows:
        return []
    available = _locked_available(conn, [int(r.account_id) for r in rows])
    a = ledger_accounts.c
    debits = {
        int(r.id): int(r.debits_posted)
        for r in conn.execute(select(a.id, a.debits_posted).where(a.id.in_([int(r.account_id) for r in rows])))
    }
    batch: list[Transfer] = []
    moved: list[tuple[str, int]] = []
    lapsed: list[Any] = []
    for r in rows:
        left = available.get(int(r.account_id), 0)
        if left <= 0:
            continue
        expiry = get_or_create(conn, tenant_id, "expiry", r.unit)
        # Keyed on the grant and its debits so far: a rerun of the same sweep is a no-op, while money
        # returning later (a voided reservation) gets its own expiry transfer.
        digest = hashlib.sha256(r.grant_id.encode()).hexdigest()[:40]
        tid = f"{SYSTEM_PREFIX}gexp:{digest}:{debits[int(r.account_id)]}"
        batch.append(Transfer(tid, int(r.account_id), expiry, left, "expire", r.grant_id, at_us=int(r.expires_at_us)))
        moved.append((r.grant_id, left))
        lapsed.append(r)
    if batch:
        results = apply_batch(conn, tenant_id, batch, now_us, allow_system_ids=True)
        bad = [res for res in results if not res.ok]
        if bad:
            raise InvalidTransfer(bad[0].message())
        units = {u: resolve_unit(conn, tenant_id, u) for u in {r.unit for r in lapsed}}
        emit(conn, tenant_id, [
            NewEvent("grant.expired", r.customer, {
                "grant_id": r.grant_id, "unit": r.unit,
                "expired": f"{from_scaled(left, units[r.unit].scale):f}",
            })
            for r, (_, left), res in zip(lapsed, moved, results, strict=True)
            if res.result is Result.CREATED
        ])  # fmt: skip
    return moved
