"""Billing catalog tables; registered on the one shared MetaData so foreign keys to tenants resolve."""

from __future__ import annotations

from metering.tables import metadata

__all__ = ["metadata"]
