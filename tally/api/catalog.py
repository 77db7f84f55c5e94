"""Meters, plans and price simulation."""

from __future__ import annotations

from tally.api.base import ApiBase


class CatalogRpcs(ApiBase):
    pass
