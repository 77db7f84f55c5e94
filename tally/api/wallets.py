"""The ledger: top-ups, grants, balances, transfers, history, conversions."""

from __future__ import annotations

from tally.api.base import ApiBase


class WalletRpcs(ApiBase):
    pass
