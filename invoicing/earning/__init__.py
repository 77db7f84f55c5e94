"""Points earned from usage: a plan's earning rules credit each subscriber's points wallet from a meter.

A viewer earns points per ad impression, a customer per referral: `accrue_points(engine, tenant_id, as_of)`
credits, for every active subscription whose plan version has earning rules and every billing period up to
`as_of`, exactly what the period's usage earns minus what was already credited, as ledger transfers from the
tenant's `points_issuance` account to the customer's points wallet. The design and its reasons are in
docs/ledger.md ("Points earned from usage").

This module is the package's API: import from here; the modules behind it are private.
"""

from invoicing.earning._accrue import (
    CODE,
    AccrualRun,
    Earned,
    accrue_all,
    accrue_points,
    points_owed,
    transfer_id,
)

__all__ = ["CODE", "AccrualRun", "Earned", "accrue_all", "accrue_points", "points_owed", "transfer_id"]
