"""Subscriptions and their lifecycle, and what is due: the bridge from subscriptions to the invoice run.

This module is the package's API: import from here; the modules behind it are private.
"""

from invoicing.subscriptions._due import DueItem, Segment, Span, WindowLife, due_periods, window_items, window_segments
from invoicing.subscriptions._preview import ChangeItems, change_items
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
    "ChangeItems",
    "DueItem",
    "Segment",
    "Span",
    "State",
    "Subscription",
    "Timing",
    "WindowLife",
    "apply_scheduled",
    "as_of",
    "cancel_subscription",
    "change_items",
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
    "window_items",
    "window_segments",
    "withdraw_scheduled",
]
