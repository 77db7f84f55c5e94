"""What a customer may use and where it stands: entitlements, the customer 360 and the portfolio, and threshold alerts.

This module is the package's API: import from here; the modules behind it are private.
"""

from invoicing.insight._alert import (
    Alert,
    Crossing,
    create_alert,
    current_period,
    delete_alert,
    evaluate_alerts,
    list_alerts,
)
from invoicing.insight._customer360 import STAGES, Amount, InvoiceRef, customer_360, portfolio
from invoicing.insight._entitlement import Decision, EntitlementCache, Refresher

__all__ = [
    "STAGES",
    "Alert",
    "Amount",
    "Crossing",
    "Decision",
    "EntitlementCache",
    "InvoiceRef",
    "Refresher",
    "create_alert",
    "current_period",
    "customer_360",
    "delete_alert",
    "evaluate_alerts",
    "list_alerts",
    "portfolio",
]
