"""Billing catalog tables; registered on the one shared MetaData so foreign keys to tenants resolve.

Why they look the way they do:
- A plan version's charges are one canonical JSON document, not rows: a published version never
  changes, it is always read whole, and the invoice run wants exactly what was published.
- `subscription_history` is append-only: every state or plan change is a new row with the instant it
  took effect, who asked and why. Billing spans (which plan, which state, when) are derived from it,
  so an invoice can always be explained from the rows that produced it.
- Scheduled changes (new plan or end at period end, trial end) live on the subscription row until
  their instant passes; then they are written to the history like any other change.
- Instants are timezone-aware DateTime; effective instants are on the 15-minute UTC grid.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from metering.tables import metadata

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    # The tenant's own id for the customer; events name customers by it.
    Column("external_id", String(256), nullable=False),
    Column("name", String(256), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("timezone", String(64), nullable=False),
    # Canonical JSON object (line1, line2, city, region, postal_code, country) or NULL.
    Column("address", Text, nullable=True),
    Column("tax_region", String(32), nullable=False),
    Column("email", String(320), nullable=False),
    # Canonical JSON object of string → string.
    Column("attributes", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "external_id"),
)

plans = Table(
    "plans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("code", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "code"),
)

plan_versions = Table(
    "plan_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", Integer, ForeignKey("plans.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # draft | published
    Column("name", String(256), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("interval", String(16), nullable=False),
    Column("trial_days", Integer, nullable=False),
    # Canonical JSON list of charges (code, kind, meter, group_by, billing, price).
    Column("charges", Text, nullable=False),
    # Canonical JSON of rating.InvoiceLimits (minimum_commitment, cap_amount).
    Column("invoice_limits", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("plan_id", "version"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, index=True),
    Column("plan_version_id", Integer, ForeignKey("plan_versions.id"), nullable=False),
    Column("state", String(16), nullable=False),  # trial | active | paused | cancelled
    Column("billing_anchor", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("trial_ends_at", DateTime(timezone=True), nullable=True),
    # Scheduled (or, once cancelled, actual) end.
    Column("ends_at", DateTime(timezone=True), nullable=True),
    Column("pending_plan_version_id", Integer, ForeignKey("plan_versions.id"), nullable=True),
    Column("pending_change_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

subscription_history = Table(
    "subscription_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", Integer, ForeignKey("subscriptions.id"), nullable=False, index=True),
    # created | trial_ended | paused | resumed | plan_changed | cancelled | change_scheduled | end_scheduled
    Column("kind", String(32), nullable=False),
    # When it takes effect (15-minute grid) and the exact instant that was asked for.
    Column("effective_at", DateTime(timezone=True), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # state from effective_at on
    Column("plan_version_id", Integer, ForeignKey("plan_versions.id"), nullable=False),
    Column("previous_state", String(16), nullable=True),
    Column("previous_plan_version_id", Integer, ForeignKey("plan_versions.id"), nullable=True),
    # For scheduled kinds: when the scheduled change will apply.
    Column("scheduled_for", DateTime(timezone=True), nullable=True),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
)

__all__ = ["customers", "metadata", "plan_versions", "plans", "subscription_history", "subscriptions"]
