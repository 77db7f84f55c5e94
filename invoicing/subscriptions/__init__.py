"""Subscriptions and their lifecycle, and what is due: the bridge from subscriptions to the invoice run.

This module is the package's API: import from here; the modules behind it are private.
"""

from invoicing.subscriptions._due import DueItem, Span, due_periods
from invoicing.subscriptions._subscription import (
    ALLOWED,
    State,
    Subscription,
    Timing,
    apply_scheduled,
    as_of,
    cancel_subscription,
    change_plan,
    create_subscription,
    get_history,
    get_subscription,
    list_subscriptions,
    pause_subscription,
    resume_subscription,
    select_subscriptions,
    subscription_from_row,
    withdraw_scheduled,
)

__all__ = [
    "ALLOWED",
    "DueItem",
    "Span",
    "State",
    "Subscription",
    "Timing",
    "apply_scheduled",
    "as_of",
    "cancel_subscription",
    "change_plan",
    "create_subscription",
    "due_periods",
    "get_history",
    "get_subscription",
    "list_subscriptions",
    "pause_subscription",
    "resume_subscription",
    "select_subscriptions",
    "subscription_from_row",
    "withdraw_scheduled",
]
