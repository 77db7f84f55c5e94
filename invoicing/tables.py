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
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
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
    # The buyer's tax id printed on its documents ("" = none).
    Column("tax_id", String(64), nullable=False, server_default=""),
    # customer | subscription; NULL = follow the tenant's billing profile.
    Column("invoice_grouping", String(16), nullable=True),
    UniqueConstraint("tenant_id", "external_id"),
)

billing_profiles = Table(
    "billing_profiles",
    metadata,
    # The seller on a tenant's documents and the document preferences the invoice run reads; one row per
    # tenant, absent until first set (readers then use the defaults).
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("legal_name", String(256), nullable=False),
    # Canonical JSON object, same shape as customers.address, or NULL.
    Column("address", Text, nullable=True),
    Column("tax_id", String(64), nullable=False),
    Column("payment_instructions", Text, nullable=False),
    Column("payment_terms_days", Integer, nullable=False),
    Column("logo", LargeBinary, nullable=True),  # PNG or JPEG bytes, at most 256 KiB
    Column("issue_zero_total", Boolean, nullable=False),
    Column("invoice_grouping", String(16), nullable=False),  # customer | subscription
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
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
    # Canonical JSON list of features the version grants (key, kind, meter/unit, amount).
    Column("features", Text, nullable=False, server_default="[]"),
    # Canonical JSON list of points earning rules (code, meter, unit, points_per_unit, cap_per_period).
    Column("earning", Text, nullable=False, server_default="[]"),
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
    # | schedule_withdrawn
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

# --- invoices (issue 7, second half) -----------------------------------------------------------------
# Money columns are BigInteger counts of the currency's minor unit (cents for USD, yen for JPY).
# Re-running a cycle creates nothing new because every invoice carries the stable key of what it bills
# (`idempotency_key`, unique per tenant) and every unit of work a unique (run, key) row.

invoice_runs = Table(
    "invoice_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    # Workers started for the same tenant and as_of share one run.
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # running | completed
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("tenant_id", "as_of"),
)

invoice_run_items = Table(
    "invoice_run_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("invoice_runs.id"), nullable=False),
    # The due item's key plus the end of its billed span (a cut span is new work: an adjustment).
    Column("item_key", String(255), nullable=False),
    Column("subscription_id", Integer, ForeignKey("subscriptions.id"), nullable=False),
    Column("status", String(16), nullable=False, index=True),  # pending | done | failed
    Column("invoice_id", Integer, nullable=True),
    Column("error", Text, nullable=True),
    UniqueConstraint("run_id", "item_key"),
)

invoice_items = Table(
    "invoice_items",
    metadata,
    # Which document billed each due item (one subscription's period, by timing): an item is billed at
    # most once while bound; a void with re-issue renames its key (`<key>|reissued:<invoice>`) so the next
    # run bills it again. The document groups items (one per customer, currency and billing date).
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False, index=True),
    Column("item_key", String(255), nullable=False),
    Column("subscription_id", Integer, ForeignKey("subscriptions.id"), nullable=True),
    Column("timing", String(16), nullable=True),
    Column("span_end", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "item_key"),
)

payments = Table(
    "payments",
    metadata,
    # A payment recorded against a finalized invoice; `payment_key` makes recording it idempotent.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False, index=True),
    Column("payment_key", String(100), nullable=False),
    Column("amount", BigInteger, nullable=False),  # minor units received
    Column("applied", BigInteger, nullable=False),  # to the invoice; the rest went to the cash wallet
    Column("currency", String(3), nullable=False),
    Column("paid_at", DateTime(timezone=True), nullable=False),
    Column("method", String(32), nullable=False),
    Column("reference", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "payment_key"),
)

number_series = Table(
    "number_series",
    metadata,
    # One row per tenant and document series (invoice, credit_note), updated in the finalize transaction:
    # each series is gapless on its own, and a credit note never takes an invoice's number.
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("series", String(16), primary_key=True),
    Column("last_number", Integer, nullable=False),
)

tax_rates = Table(
    "tax_rates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("region", String(32), nullable=False),  # matches customers.tax_region
    Column("rate", String(24), nullable=False),  # percent as a decimal string, e.g. "20" or "8.875"
    Column("inclusive", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "region"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, index=True),
    Column("subscription_id", Integer, ForeignKey("subscriptions.id"), nullable=True),
    Column("plan_version_id", Integer, ForeignKey("plan_versions.id"), nullable=True),
    Column("run_id", Integer, ForeignKey("invoice_runs.id"), nullable=True),
    Column("idempotency_key", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # invoice | adjustment | credit_note
    Column("corrects_invoice_id", Integer, ForeignKey("invoices.id"), nullable=True, index=True),
    Column("currency", String(3), nullable=False),
    Column("timing", String(16), nullable=True),  # in_advance | in_arrears
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("span_start", DateTime(timezone=True), nullable=False),
    Column("span_end", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    # draft | finalized | partially_paid | paid | void | uncollectible | closed (zero total, not issued)
    Column("status", String(16), nullable=False),
    Column("number", Integer, nullable=True),  # NULL until finalized; gapless per tenant and series
    Column("number_series", String(16), nullable=True),  # invoice | credit_note; NULL until finalized
    Column("subtotal", BigInteger, nullable=False),
    Column("tax", BigInteger, nullable=False),
    Column("credits_applied", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("tax_region", String(32), nullable=False),
    Column("tax_rate", String(24), nullable=False),
    Column("tax_inclusive", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finalized_at", DateTime(timezone=True), nullable=True),
    Column("paid_at", DateTime(timezone=True), nullable=True),
    Column("voided_at", DateTime(timezone=True), nullable=True),
    Column("void_reason", Text, nullable=True),
    # Money still owed on a finalized document: total at finalizing, less payments and credit notes
    # applied; 0 once paid, void, uncollectible or a credit note. Σ over open documents = receivable.
    Column("amount_due", BigInteger, nullable=False, server_default="0"),
    Column("amount_paid", BigInteger, nullable=False, server_default="0"),
    Column("payment_due_at", DateTime(timezone=True), nullable=True),  # finalized_at + the payment terms
    Column("uncollectible_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("tenant_id", "idempotency_key"),
    UniqueConstraint("tenant_id", "number_series", "number"),
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False),
    Column("position", Integer, nullable=False),
    # charge | minimum_true_up | cap_adjustment | credit | sla_credit | tax | proration_adjustment
    Column("kind", String(32), nullable=False),
    Column("charge_code", String(64), nullable=False),
    Column("meter", String(64), nullable=True),
    Column("group_key", Text, nullable=False),  # canonical JSON of the dimension values, "" if none
    Column("plan_version_id", Integer, ForeignKey("plan_versions.id"), nullable=True),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("quantity_units", BigInteger, nullable=False),
    Column("quantity_scale", Integer, nullable=False),
    Column("unit_price", String(48), nullable=True),
    Column("amount", BigInteger, nullable=False),  # minor units, rounded once
    Column("amount_exact", String(80), nullable=False),  # the unrounded amount it was rounded from
    Column("detail", Text, nullable=False),  # JSON: model, tier breakdown, proration fraction
    Column("lineage", Text, nullable=False),  # JSON: due item key, usage windows, source, corrected line
    UniqueConstraint("invoice_id", "position"),
)


# --- coupons and discounts (issue 14, part 7) -------------------------------------------------------------
# A coupon is a tenant's reusable definition; a discount is a coupon applied to one customer (all its
# subscriptions) or one subscription from an instant; a redemption is one billing period a discount
# produced a line for. The unique (discount, period start) key is what keeps a re-run from counting a
# period twice, so "once" and "for N periods" hold however often a cycle is run.

coupons = Table(
    "coupons",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("code", String(64), nullable=False),
    Column("name", String(256), nullable=False),
    Column("kind", String(16), nullable=False),  # percent | amount
    Column("percent", String(24), nullable=True),  # percent: exact decimal text, 0 < p <= 100
    Column("amount", BigInteger, nullable=True),  # amount: minor units of `currency`
    Column("currency", String(3), nullable=True),
    Column("duration", String(16), nullable=False),  # once | repeating | forever
    Column("periods", Integer, nullable=True),  # repeating: N >= 1; NULL otherwise
    Column("applies_to", Text, nullable=True),  # canonical JSON list of charge codes; NULL = every charge
    Column("redeem_by", DateTime(timezone=True), nullable=True),
    Column("max_redemptions", Integer, nullable=True),  # times it may be applied in all; NULL = no limit
    # Times applied so far; raised with a conditional UPDATE, so max_redemptions holds under concurrency.
    Column("times_applied", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "code"),
)

discounts = Table(
    "discounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("coupon_id", Integer, ForeignKey("coupons.id"), nullable=False, index=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, index=True),
    # NULL: every subscription of the customer; else only this one's lines.
    Column("subscription_id", Integer, ForeignKey("subscriptions.id"), nullable=True),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True), nullable=True),  # in force until then (exclusive)
    Column("created_at", DateTime(timezone=True), nullable=False),
)

discount_redemptions = Table(
    "discount_redemptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("discount_id", Integer, ForeignKey("discounts.id"), nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("amount", BigInteger, nullable=False),  # minor units discounted when first recorded
    Column("currency", String(3), nullable=False),
    UniqueConstraint("discount_id", "period_start"),
)

# Points earned from usage (`invoicing.earning`): one row per subscription, plan version, earning rule and billing
# period, holding what has been credited so far. An accrual run locks the row, credits exactly what the period's
# usage earns minus `earned`, and moves `earned` in the same transaction as the ledger transfer, so re-runs and
# re-sent events never credit twice. The transfers are `~earn:s<sub>:v<version>:<rule>:<period start>#<n>`.
points_accruals = Table(
    "points_accruals",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("subscription_id", Integer, ForeignKey("subscriptions.id"), primary_key=True, autoincrement=False),
    Column("plan_version_id", Integer, ForeignKey("plan_versions.id"), primary_key=True, autoincrement=False),
    Column("rule", String(64), primary_key=True),
    Column("period_start", DateTime(timezone=True), primary_key=True),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("customer", String(256), nullable=False),  # external id, as the ledger names wallets
    Column("meter", String(64), nullable=False),
    Column("unit", String(32), nullable=False),
    # The period's usage (plain decimal text) counted up to `through` (exclusive) when `earned` last moved.
    Column("quantity", String(48), nullable=False),
    Column("through", DateTime(timezone=True), nullable=False),
    Column("earned", BigInteger, nullable=False),  # steps of `unit` credited so far
    Column("transfers", Integer, nullable=False),  # transfers written so far: the next one's suffix
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_points_accruals_tenant_customer", "tenant_id", "customer"),
)


# --- disputes and portal links (issue 16, part 3) ----------------------------------------------------------
# A dispute is a customer's flag on one line of an issued invoice, with their reason; finance resolves it with
# a credit note (a `line_credit` document correcting that invoice) or a rejection note, and both sides read the
# outcome from this row. `open_line` holds the line's position while the dispute is open and NULL once it is
# resolved: the unique (invoice_id, open_line) pair allows one open dispute per line (NULLs never collide on
# either database) and any number of resolved ones.
disputes = Table(
    "disputes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False),
    Column("line_position", Integer, nullable=False),
    Column("open_line", Integer, nullable=True),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open | credited | rejected
    Column("currency", String(3), nullable=False),
    Column("line_amount", BigInteger, nullable=False),  # minor units, as the line bills it
    Column("opened_by", String(100), nullable=False),  # "portal" or "api key <id>"
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("resolved_by", String(100), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("note", Text, nullable=True),  # finance's answer: why it was rejected, or a word on the credit
    Column("credit_amount", BigInteger, nullable=True),  # minor units credited (before tax)
    Column("credit_note_id", Integer, ForeignKey("invoices.id"), nullable=True),
    UniqueConstraint("invoice_id", "open_line"),
    Index("ix_disputes_tenant_status", "tenant_id", "status", "id"),
    Index("ix_disputes_tenant_customer", "tenant_id", "customer_id", "id"),
)

# The key that signs a tenant's customer portal links (HMAC-SHA256), one row per tenant, created on first use.
# It must be stored as it is (a digest could not sign); rotating it (`version` + 1) makes every link and every
# portal session opened with the old one invalid at once, for this tenant only.
portal_secrets = Table(
    "portal_secrets",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("secret", LargeBinary, nullable=False),  # 32 random bytes
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rotated_at", DateTime(timezone=True), nullable=False),
)

__all__ = [
    "billing_profiles",
    "coupons",
    "customers",
    "discount_redemptions",
    "discounts",
    "disputes",
    "invoice_lines",
    "invoice_run_items",
    "invoice_runs",
    "invoices",
    "metadata",
    "number_series",
    "plan_versions",
    "plans",
    "points_accruals",
    "portal_secrets",
    "subscription_history",
    "subscriptions",
    "tax_rates",
]
