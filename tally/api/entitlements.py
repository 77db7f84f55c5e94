"""Entitlements: CheckEntitlement and ListEntitlements, answered from memory."""

from __future__ import annotations

from tally.api.base import ApiBase, Worker


class EntitlementRpcs(ApiBase):
    def setup_entitlements(self) -> list[Worker]:
        """Background workers this part needs (the entitlement cache's refresher)."""
        return []
