"""Double-entry ledger of credits and points (issue 6), in the spirit of TigerBeetle.

Accounts and immutable transfers, nothing else: wallets, grants, spends, conversions and expiries
are all transfers between accounts, so every unit's balances always sum to zero. Start with
`Ledger(engine, tenant_id)`; the design and its reasons are in docs/ledger.md.
"""

from invoicing.ledger.account import Account, AccountFlags
from invoicing.ledger.balance import Balance, HistoryLine, UnitTotal
from invoicing.ledger.conversion import Conversion
from invoicing.ledger.errors import (
    AccountNotFound,
    BalanceOverflow,
    ExistsWithDifferentBody,
    InsufficientFunds,
    InvalidTransfer,
    PendingNotOpen,
    RateNotFound,
    UnitMismatch,
)
from invoicing.ledger.grant import Draw, Grant, GrantInfo, Spend
from invoicing.ledger.ledger import Ledger, raise_for
from invoicing.ledger.transfer import Result, StoredTransfer, Transfer, TransferFlags, TransferResult
from invoicing.ledger.unit import Rate

__all__ = [
    "Account",
    "AccountFlags",
    "AccountNotFound",
    "Balance",
    "BalanceOverflow",
    "Conversion",
    "Draw",
    "ExistsWithDifferentBody",
    "Grant",
    "GrantInfo",
    "HistoryLine",
    "InsufficientFunds",
    "InvalidTransfer",
    "Ledger",
    "PendingNotOpen",
    "Rate",
    "RateNotFound",
    "Result",
    "Spend",
    "StoredTransfer",
    "Transfer",
    "TransferFlags",
    "TransferResult",
    "UnitMismatch",
    "UnitTotal",
    "raise_for",
]
