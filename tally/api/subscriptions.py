"""Subscriptions, their changes, and usage queries."""

from __future__ import annotations

from tally.api.base import ApiBase


class SubscriptionRpcs(ApiBase):
    pass
