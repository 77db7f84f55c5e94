"""Platform tables: the outbox of domain events, webhook endpoints and deliveries, alerts.

Why they look the way they do:
- `outbox_events` is keyed (tenant_id, sequence) with a per-tenant gapless sequence taken from
  `outbox_heads` in the writing transaction. The head row stays locked until that transaction
  commits, so sequence order is commit order: a reader that has seen N has seen everything before N,
  and a cursor can never skip an event that commits late (an auto-increment id could).
- A webhook endpoint keeps its own cursor (`delivered_sequence`); deliveries are a log of attempts,
  one row per attempt, so "what did we send, when, and what came back" is a query.
- Alert crossings are rows keyed by (alert, period start): the unique key is what makes
  `usage.threshold_crossed` fire once per crossing per period, even with two evaluators racing.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from metering.tables import metadata

outbox_heads = Table(
    "outbox_heads",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("last_sequence", BigInteger, nullable=False),
)

outbox_events = Table(
    "outbox_events",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(64), nullable=False),
    Column("customer", String(256), nullable=False),  # external id, "" for none
    Column("data", Text, nullable=False),  # canonical JSON
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("types", Text, nullable=False),  # JSON list of types or prefixes; [] = all
    Column("secret", String(128), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("delivered_sequence", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("endpoint_id", Integer, ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # pending | succeeded | failed | dead
    Column("http_status", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column("replay", Boolean, nullable=False),
    Column("attempted_at", DateTime(timezone=True), nullable=True),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=True),  # NULL: tenant-wide (leakage)
    Column("kind", String(16), nullable=False),  # usage | spend | balance | leakage
    Column("meter", String(64), nullable=True),
    Column("unit", String(16), nullable=True),
    Column("threshold", String(48), nullable=False),  # exact decimal
    Column("created_at", DateTime(timezone=True), nullable=False),
)

alert_crossings = Table(
    "alert_crossings",
    metadata,
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    # usage/spend: the billing period's start; balance: the instant it fell below (re-armed on recovery).
    Column("period_start", DateTime(timezone=True), primary_key=True),
    Column("value", String(48), nullable=False),
    Column("sequence", BigInteger, nullable=False),  # the outbox event it emitted
    Column("crossed_at", DateTime(timezone=True), nullable=False),
)

__all__ = [
    "alert_crossings",
    "alerts",
    "outbox_events",
    "outbox_heads",
    "webhook_deliveries",
    "webhook_endpoints",
]
