"""Customers: create, get, list, update."""

from __future__ import annotations

from tally.api.base import ApiBase


class CustomerRpcs(ApiBase):
    pass
