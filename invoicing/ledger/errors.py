"""Ledger errors: finer types under the shared domain tree, so gRPC/CLI mapping needs no change."""

from __future__ import annotations

from metering.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound


class LedgerError(Exception):
    """Mixin so callers can catch every ledger failure at once."""


class InsufficientFunds(FailedPrecondition, LedgerError):
    """A flagged account would go below zero (or eligible grants do not cover a spend)."""


class BalanceOverflow(FailedPrecondition, LedgerError):
    """A running total would leave int64: refused, never wrapped."""


class UnitMismatch(InvalidArgument, LedgerError):
    """Debit and credit accounts count different units; convert first."""


class ExistsWithDifferentBody(AlreadyExists, LedgerError):
    """An id was reused for a different movement; `field` names the first field that differs."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class PendingNotOpen(FailedPrecondition, LedgerError):
    """A post/void names a pending transfer that is already posted, voided or expired."""


class AccountNotFound(NotFound, LedgerError):
    pass


class RateNotFound(NotFound, LedgerError):
    pass


class InvalidTransfer(InvalidArgument, LedgerError):
    """A transfer the ledger cannot even check; `field` names the offending field when one is to blame."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


__all__ = [
    "AccountNotFound",
    "BalanceOverflow",
    "ExistsWithDifferentBody",
    "InsufficientFunds",
    "InvalidTransfer",
    "LedgerError",
    "PendingNotOpen",
    "RateNotFound",
    "UnitMismatch",
]
