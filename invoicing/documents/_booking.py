"""Every money movement of a document, in the double-entry ledger.

The accounts (per currency, or per points unit):

    receivable (customer)  what the customer owes on finalized documents (debit balance), or is owed
    revenue                earned: credited when a document is finalized, debited by credit notes
    tax_payable            tax collected for the authorities
    cash_in                money received (payments, wallet top-ups)
    cash / promo / grant   the customer's balances that credits draw from
    bad_debt               receivables written off as uncollectible

The movements (transfer ids start with the ledger's reserved prefix, so no client can forge one):

    draft written      pending holds: credits  wallet/grant → receivable, points  points wallet → revenue
    draft voided       the holds are voided: the balances are free again
    finalized          holds posted; receivable ← revenue (net of tax) + tax_payable, for the gross
                       amount (total + money credits), so the receivable is left at the total
    credit note        the reverse booking; it pays down the invoice it corrects, any excess goes to the
                       customer's cash wallet (an overpaid customer holds it as credit)
    payment            cash_in → receivable up to what is due; any excess → the customer's cash wallet
    uncollectible      bad_debt ← receivable for what is still due
    finalized voided   the finalize booking reversed, credits and points given back to where they came from

Invariant (tested over whole cycles): per unit, debits equal credits; per customer and currency, the
receivable's balance equals the sum of `amount_due` over their open documents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from invoicing.documents._assembly import Hold, Source
from invoicing.ledger.account import get_or_create
from invoicing.ledger.errors import InvalidTransfer
from invoicing.ledger.tables import ledger_accounts, ledger_grants, ledger_transfers
from invoicing.ledger.transfer import SYSTEM_PREFIX, Transfer, TransferFlags, apply_batch

_LINKED = TransferFlags.LINKED
_PENDING = TransferFlags.PENDING


def document_base(tenant_id: int, key: str) -> str:
    """Prefix of every ledger transfer id of a document (reserved prefix: clients cannot write these)."""
    return f"{SYSTEM_PREFIX}inv:{tenant_id}:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _apply(conn: Connection, tenant_id: int, transfers: Sequence[Transfer], now_us: int) -> None:
    if not transfers:
        return
    for k in range(0, len(transfers), 2000):
        chunk = list(transfers[k : k + 2000])
        results = apply_batch(conn, tenant_id, chunk, now_us, allow_system_ids=True)
        failed = [r for r in results if not r.ok and r.result.value != "linked_event_failed"]
        if failed:
            raise InvalidTransfer(failed[0].message())


def _linked(chain: list[Transfer]) -> list[Transfer]:
    """All-or-nothing: every transfer but the last carries LINKED."""
    return [
        Transfer(t.id, t.debit_account_id, t.credit_account_id, t.amount, t.code, t.reference,
                 t.flags | _LINKED if k < len(chain) - 1 else t.flags, t.pending_id, t.timeout_s, t.at_us)
        for k, t in enumerate(chain)
    ]  # fmt: skip


# --- balances a draft may draw --------------------------------------------------------------------------
def load_sources(
    conn: Connection, tenant_id: int, wants: Mapping[int, tuple[str, set[str]]], *, lock: bool = True
) -> dict[int, dict[str, list[Source]]]:
    """Per customer id (→ (external id, units wanted)), every grant and wallet of those units in draw order:
    grants by priority, then earliest expiry (never-expiring last), earliest effective, grant id; then the
    promotional and cash wallets (money) or the points wallet. Rows are locked (PostgreSQL; `lock`) so the
    amounts stay true until the holds are written in this transaction; a worker assembling ahead of the
    writer reads them unlocked, and the writer keeps its documents only if its locked read is equal."""
    by_name = {ext: (cid, units) for cid, (ext, units) in wants.items() if units}
    out: dict[int, dict[str, list[Source]]] = {}
    if not by_name:
        return out
    names = sorted(by_name)
    a, g = ledger_accounts.c, ledger_grants.c
    accounts: dict[int, Any] = {}
    grants: dict[int, Any] = {}
    for k in range(0, len(names), 900):
        chunk = names[k : k + 900]
        query = (
            select(a.id, a.kind, a.customer, a.unit, a.credits_posted, a.debits_posted, a.debits_pending)
            .where(a.tenant_id == tenant_id, a.customer.in_(chunk), a.kind.in_(("grant", "promo", "cash", "points")))
            .order_by(a.id)
        )
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        accounts.update((int(r.id), r) for r in conn.execute(query))
        grants.update(
            (int(r.account_id), r)
            for r in conn.execute(
                select(g.account_id, g.grant_id, g.priority, g.effective_at_us, g.expires_at_us, g.applies_to).where(
                    g.tenant_id == tenant_id, g.customer.in_(chunk)
                )
            )
        )
    ranked: list[tuple[tuple[Any, ...], Source, int]] = []
    wallet_rank = {"promo": 0, "cash": 1, "points": 0}
    for aid, r in accounts.items():
        cid, units = by_name[r.customer]
        if r.unit not in units:
            continue
        available = int(r.credits_posted) - int(r.debits_posted) - int(r.debits_pending)
        if r.kind == "grant":
            gr = grants.get(aid)
            if gr is None:
                continue
            never = gr.expires_at_us is None
            applies = None if gr.applies_to is None else frozenset(json.loads(gr.applies_to))
            src = Source(aid, r.unit, available, gr.grant_id, applies, int(gr.effective_at_us),
                         None if never else int(gr.expires_at_us))  # fmt: skip
            rank: tuple[Any, ...] = (0, int(gr.priority), 1 if never else 0, gr.expires_at_us or 0,
                                     int(gr.effective_at_us), gr.grant_id)  # fmt: skip
        else:
            src = Source(aid, r.unit, available)
            rank = (1, wallet_rank[r.kind], 0, 0, 0, "")
        ranked.append(((cid, r.unit, *rank), src, cid))
    ranked.sort(key=lambda x: x[0])
    for _, src, cid in ranked:
        out.setdefault(cid, {}).setdefault(src.unit, []).append(src)
    return out


def hold_transfers(
    conn: Connection, tenant_id: int, holds: Sequence[Hold], currency: str, customer: str, due_at: datetime, base: str
) -> tuple[list[Transfer], list[str]]:
    """The pending transfers of a document's draws (one linked chain) and their ids, in draw order:
    `{base}:h{n}`, so a worker building the document's rows knows them before anything is written."""
    if not holds:
        return [], []
    chain: list[Transfer] = []
    receivable = get_or_create(conn, tenant_id, "receivable", currency, customer)
    revenue: dict[str, int] = {}
    at_us = int(due_at.timestamp()) * 1_000_000
    for n, h in enumerate(holds):
        if h.unit == currency:
            to = receivable
        else:
            if h.unit not in revenue:
                revenue[h.unit] = get_or_create(conn, tenant_id, "revenue", h.unit)
            to = revenue[h.unit]
        chain.append(Transfer(f"{base}:h{n}", h.account_id, to, h.amount, "invoice_hold", h.charge, _PENDING,
                              at_us=at_us))  # fmt: skip
    return _linked(chain), [t.id for t in chain]


def write_holds(conn: Connection, tenant_id: int, transfers: Sequence[Transfer], now_us: int) -> None:
    _apply(conn, tenant_id, transfers, now_us)


def _holds_of(lines: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for ln in lines:
        detail = ln.detail
        out += [str(h) for h in detail.get("holds", [])]
    return out


def _signed(tid: str, debit: int, credit: int, amount: int, code: str, ref: str, at_us: int) -> Transfer | None:
    """A movement of a signed amount: a negative one runs the other way; zero moves nothing."""
    if amount == 0:
        return None
    if amount < 0:
        debit, credit, amount = credit, debit, -amount
    return Transfer(tid, debit, credit, amount, code, ref, at_us=at_us)


def book_finalize(conn: Connection, tenant_id: int, row: Any, lines: Sequence[Any], customer: str, now_us: int) -> None:
    """Post the holds and book the receivable against revenue and tax payable (module docstring)."""
    base = document_base(tenant_id, row.idempotency_key)
    chain = [Transfer(f"{h}:post", None, None, None, "invoice_post", "", TransferFlags.POST_PENDING, h)
             for h in _holds_of(lines)]  # fmt: skip
    ccy = row.currency
    money_credits = -sum(int(ln.amount) for ln in lines if ln.kind == "credit")
    gross = int(row.total) + money_credits
    tax = int(row.tax)
    receivable = get_or_create(conn, tenant_id, "receivable", ccy, customer)
    revenue = get_or_create(conn, tenant_id, "revenue", ccy)
    tax_payable = get_or_create(conn, tenant_id, "tax_payable", ccy)
    label = f"invoice {row.id}"
    for t in (
        _signed(f"{base}:rev", receivable, revenue, gross - tax, "invoice_revenue", label, now_us),
        _signed(f"{base}:tax", receivable, tax_payable, tax, "invoice_tax", label, now_us),
    ):
        if t is not None:
            chain.append(t)
    _apply(conn, tenant_id, _linked(chain), now_us)


def book_void_draft(conn: Connection, tenant_id: int, lines: Sequence[Any], now_us: int) -> None:
    """Release a draft's holds: what it reserved is available again."""
    chain = [Transfer(f"{h}:void", None, None, None, "invoice_release", "", TransferFlags.VOID_PENDING, h)
             for h in _holds_of(lines)]  # fmt: skip
    _apply(conn, tenant_id, _linked(chain), now_us)


def book_void_finalized(
    conn: Connection, tenant_id: int, row: Any, lines: Sequence[Any], customer: str, now_us: int
) -> None:
    """Reverse a finalized document: revenue and tax back out of the receivable, every draw given back."""
    base = document_base(tenant_id, row.idempotency_key)
    ccy = row.currency
    receivable = get_or_create(conn, tenant_id, "receivable", ccy, customer)
    revenue = get_or_create(conn, tenant_id, "revenue", ccy)
    tax_payable = get_or_create(conn, tenant_id, "tax_payable", ccy)
    money_credits = -sum(int(ln.amount) for ln in lines if ln.kind == "credit")
    gross = int(row.total) + money_credits
    tax = int(row.tax)
    label = f"void of invoice {row.id}"
    chain = [
        t
        for t in (
            _signed(f"{base}:rev:rv", revenue, receivable, gross - tax, "invoice_void", label, now_us),
            _signed(f"{base}:tax:rv", tax_payable, receivable, tax, "invoice_void", label, now_us),
        )
        if t is not None
    ]
    # Each posted hold went source → receivable (money) or source → revenue (points): send it back.
    ids = _holds_of(lines)
    if ids:
        t = ledger_transfers.c
        held = conn.execute(
            select(t.transfer_id, t.debit_account_id, t.credit_account_id, t.amount, t.reference).where(
                t.tenant_id == tenant_id, t.transfer_id.in_(ids)
            )
        ).all()
        for h in sorted(held, key=lambda r: ids.index(r.transfer_id)):
            chain.append(
                Transfer(f"{h.transfer_id}:rv", int(h.credit_account_id), int(h.debit_account_id), int(h.amount),
                         "invoice_void", str(h.reference), at_us=now_us)
            )  # fmt: skip
    _apply(conn, tenant_id, _linked(chain), now_us)


def payment_base(tenant_id: int, key: str) -> str:
    """Prefix of the ledger transfer ids of the payment with idempotency key `key`."""
    return f"{SYSTEM_PREFIX}pay:{tenant_id}:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def book_payment(
    conn: Connection, tenant_id: int, key: str, currency: str, customer: str, applied: int, excess: int,
    reference: str, at_us: int,
) -> None:  # fmt: skip
    """Money received: cash_in → receivable for what was due, the excess to the customer's cash wallet."""
    base = payment_base(tenant_id, key)
    cash_in = get_or_create(conn, tenant_id, "cash_in", currency)
    chain: list[Transfer] = []
    if applied:
        receivable = get_or_create(conn, tenant_id, "receivable", currency, customer)
        chain.append(Transfer(f"{base}:ar", cash_in, receivable, applied, "payment", reference, at_us=at_us))
    if excess:
        wallet = get_or_create(conn, tenant_id, "cash", currency, customer)
        chain.append(Transfer(f"{base}:over", cash_in, wallet, excess, "overpayment", reference, at_us=at_us))
    _apply(conn, tenant_id, _linked(chain), at_us)


def book_credit_balance(
    conn: Connection, tenant_id: int, base: str, currency: str, customer: str, amount: int, ref: str, at_us: int
) -> None:
    """A credit the customer is owed beyond what they owe (a credit note larger than the invoice's
    open amount): out of the receivable into their cash wallet, where the next invoice draws it."""
    if amount <= 0:
        return
    receivable = get_or_create(conn, tenant_id, "receivable", currency, customer)
    wallet = get_or_create(conn, tenant_id, "cash", currency, customer)
    _apply(conn, tenant_id, [Transfer(f"{base}:credit", receivable, wallet, amount, "credit_balance", ref,
                                      at_us=at_us)], at_us)  # fmt: skip


def book_uncollectible(conn: Connection, tenant_id: int, row: Any, customer: str, amount: int, now_us: int) -> None:
    """Write off what is still due: bad_debt ← receivable."""
    if amount <= 0:
        return
    base = document_base(tenant_id, row.idempotency_key)
    receivable = get_or_create(conn, tenant_id, "receivable", row.currency, customer)
    bad_debt = get_or_create(conn, tenant_id, "bad_debt", row.currency)
    _apply(conn, tenant_id, [Transfer(f"{base}:writeoff", bad_debt, receivable, amount, "uncollectible",
                                      f"invoice {row.id}", at_us=now_us)], now_us)  # fmt: skip


__all__ = [
    "book_credit_balance",
    "book_finalize",
    "book_payment",
    "book_uncollectible",
    "book_void_draft",
    "book_void_finalized",
    "document_base",
    "hold_transfers",
    "load_sources",
    "payment_base",
    "write_holds",
]
