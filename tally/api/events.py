"""Events out: WatchEvents and ListEvents over the outbox, webhooks, alerts."""

from __future__ import annotations

from tally.api.base import ApiBase, Worker


class EventRpcs(ApiBase):
    def setup_events(self) -> list[Worker]:
        """Background workers this part needs (webhook dispatcher, alert evaluator)."""
        return []
