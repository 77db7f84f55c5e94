"""Customer 360 and the tenant's portfolio."""

from __future__ import annotations

from tally.api.base import ApiBase


class InsightRpcs(ApiBase):
    pass
