"""Price simulation over real history: what the customers of a window would have paid under a candidate plan.

The candidate is a plan definition (a plan file's JSON, never stored) or an existing version (`CODE@VERSION`,
a draft included: "plan v2" is usually not published yet). Every customer with billable time in
[start, end) is rated twice over the same stored usage, by the invoice run's own rater
(`invoicing.documents.Rater`: usage from the rollups in one bulk extract per window, per-unit, package,
graduated and volume charges through the numba kernels, every other model through its exact reference):

* **current**: under the plan versions they were on, laid on those versions' periods;
* **simulated**: the same subscriptions, the same active time, under the candidate (on its periods).

So "current" is not what the stored invoices say (they may have been voided, corrected, discounted, or not
run yet): it is the current plans re-rated the same way as the candidate, which is what makes the
difference like for like. Amounts are the rated charges of the window before tax, discounts, credits and
wallet draws, in integer minor units of the one currency both sides price in. The window's active time is
cut at its edges: a period that straddles `start` or `end` bills only its usage inside the window and the
prorated share of its fees (a window on period boundaries gives exactly what the invoice run bills).

A customer counts under the plan version of its last active stretch in the window ("current plan");
with `plan_code`, only the time on that plan is simulated (other subscriptions of the same customers stay
out of both amounts).
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import Engine

from invoicing.catalog import (
    PlanVersion,
    VersionStatus,
    get_plan_version,
    get_plan_version_by_id,
    is_quarter_hour,
    list_plan_versions,
    parse_plan,
    utc,
)
from invoicing.documents import Rater
from invoicing.subscriptions import DueItem, State, WindowLife, window_items, window_segments
from metering.deadline import checkpoint
from metering.errors import InvalidArgument
from metering.meter import list_meters
from rating.rounding import RoundingMode, round_scaled
from rating.unit import currency as currency_unit

#: The longest window one simulation rates (a year of usage: bounded work per request).
WINDOW_MAX = timedelta(days=366)
#: Customers rated per batch (their usage is extracted together, then dropped).
BATCH_CUSTOMERS = 2_000
#: The id an unsaved candidate carries while it is rated (stored ids are positive).
CANDIDATE_ID = -1
REFERENCE = re.compile(r"^(?P<code>[a-z0-9][a-z0-9_.\-]{0,63})@v?(?P<version>[0-9]{1,9})$")
#: An unsaved candidate's created_at (it was never created; nothing shows it).
UNSAVED_AT = datetime(1970, 1, 1, tzinfo=UTC)
#: Edges of the distribution's buckets, in percent of the current amount.
EDGES = (-50, -20, -10, -5, 0, 5, 10, 20, 50)
#: The bucket of customers who had no positive amount under their current plan (a change has no percentage).
FROM_ZERO = "no current amount"
#: The index of the "unchanged" bucket.
UNCHANGED = 5


def _money(minor: int, scale: int) -> Decimal:
    return Decimal(minor).scaleb(-scale)


def pct_of(current: Decimal | int, difference: Decimal | int) -> Decimal | None:
    """`difference` in percent of `current`, rounded once half-even to 0.01 from the exact quotient; None
    without a positive current amount (a change from nothing has no percentage)."""
    if current <= 0:
        return None
    x = Fraction(difference) * 100 / Fraction(current)
    return Decimal(round_scaled(x.numerator * 100, x.denominator, RoundingMode.HALF_EVEN)).scaleb(-2)


@dataclass(frozen=True, slots=True)
class CustomerChange:
    """One customer's amounts over the window, in minor units of the simulation's currency."""

    customer: str
    plan: str  # label of the current plan version ("pro v1")
    current_minor: int
    simulated_minor: int
    scale: int

    @property
    def difference_minor(self) -> int:
        return self.simulated_minor - self.current_minor

    @property
    def current(self) -> Decimal:
        return _money(self.current_minor, self.scale)

    @property
    def simulated(self) -> Decimal:
        return _money(self.simulated_minor, self.scale)

    @property
    def difference(self) -> Decimal:
        return _money(self.difference_minor, self.scale)

    @property
    def change(self) -> Fraction | None:
        """The exact change in percent of the current amount; None when there was no positive amount."""
        if self.current_minor <= 0:
            return None
        return Fraction(self.difference_minor * 100, self.current_minor)

    @property
    def pct(self) -> Decimal | None:
        """The change in percent, rounded half-even to 0.01 (for display; comparisons use `change`)."""
        return pct_of(self.current_minor, self.difference_minor)

    def more_than(self, pct: Decimal) -> bool:
        """Pays more than `pct` % extra; from nothing (or a credit) to more always counts."""
        change = self.change
        if change is None:
            return self.simulated_minor > self.current_minor
        return change > Fraction(pct)


class _Sums:
    """The difference and its percentage of a group's `current` and `simulated` sums."""

    __slots__ = ()
    current: Decimal
    simulated: Decimal

    @property
    def difference(self) -> Decimal:
        return self.simulated - self.current

    @property
    def pct(self) -> Decimal | None:
        return pct_of(self.current, self.difference)


@dataclass(frozen=True, slots=True)
class PlanTotal(_Sums):
    """The customers whose current plan is `plan`, and what they pay now and would pay."""

    plan: str
    customers: int
    current: Decimal
    simulated: Decimal


@dataclass(frozen=True, slots=True)
class Bucket:
    """Customers whose change falls in (low, high] on the increase side, [low, high) on the decrease side;
    `unchanged` and `from zero` are buckets of their own."""

    label: str
    customers: int


@dataclass(frozen=True)
class Simulation(_Sums):
    candidate: str  # "pro v2", or "pro (unsaved)" for a plan file
    currency: str
    start: datetime
    end: datetime
    customers: tuple[CustomerChange, ...]  # by customer external id
    plans: tuple[PlanTotal, ...]  # by plan label
    distribution: tuple[Bucket, ...]
    threshold_pct: Decimal | None
    current: Decimal  # every customer's, summed
    simulated: Decimal
    more_than: tuple[CustomerChange, ...] = field(default=())  # biggest difference first


def bucket_labels() -> list[str]:
    """The distribution's buckets, decreases first: below the first edge, between edges, above the last."""
    down = [f"{a}% to {b}%" for a, b in itertools.pairwise(EDGES[:5])]
    up = [f"{a}% to {b}%" for a, b in itertools.pairwise(EDGES[4:])]
    return [f"less than {EDGES[0]}%", *down, "unchanged", *up, f"more than {EDGES[-1]}%", FROM_ZERO]


def _bucket(change: CustomerChange) -> int:
    """Index into `bucket_labels()`: exact comparisons of the change with the edges."""
    x = change.change
    if x is None:
        return UNCHANGED if change.difference_minor == 0 else len(EDGES) + 2
    if x == 0:
        return UNCHANGED
    if x < 0:  # [-50, -20) → 1, ..., [-5, 0) → 4; below -50 → 0
        return bisect_right(EDGES[:4], x)
    return UNCHANGED + 1 + bisect_left(EDGES[5:], x)  # (0, 5] → 6, ..., above 50 → 10


def _distribution(changes: list[CustomerChange]) -> tuple[Bucket, ...]:
    labels = bucket_labels()
    counts = [0] * len(labels)
    for c in changes:
        counts[_bucket(c)] += 1
    return tuple(Bucket(label, n) for label, n in zip(labels, counts, strict=True))


# --- the candidate ---------------------------------------------------------------------------------------------
def load_candidate(engine: Engine, tenant_id: int, candidate: str | Mapping[str, Any]) -> PlanVersion:
    """A plan version from `CODE@VERSION` (stored, draft or published), or an unsaved one from plan JSON."""
    if isinstance(candidate, str):
        text = candidate.strip()
        if not text:
            raise InvalidArgument('candidate is required: a plan definition (JSON) or a version such as "pro@2"')
        ref = REFERENCE.match(text)
        if ref is not None:
            return get_plan_version(engine, tenant_id, ref["code"], int(ref["version"]))
        if not text.startswith("{"):
            raise InvalidArgument(
                f"candidate {text[:80]!r} is neither CODE@VERSION (e.g. pro@2) nor a plan definition (a JSON object)"
            )
    plan, charges = parse_plan(candidate)
    meters = {m.code for m in list_meters(engine, tenant_id)}
    for i, c in enumerate(charges):
        if c.kind == "usage" and c.meter not in meters:
            raise InvalidArgument(
                f"candidate charges[{i}].meter: no meter {c.meter!r} in this tenant; "
                "a simulation re-prices stored usage, so every usage charge must price an existing meter"
            )
    return PlanVersion(
        id=CANDIDATE_ID, plan_id=CANDIDATE_ID, code=plan.code, version=0, status=VersionStatus.DRAFT,
        name=plan.name, currency=plan.currency, interval=plan.interval, trial_days=plan.trial_days,
        charges=charges, invoice_limits=plan.invoice_limits, created_at=UNSAVED_AT,
        published_at=None, features=tuple(plan.features),
    )  # fmt: skip


def candidate_label(plan: PlanVersion) -> str:
    return f"{plan.code} (unsaved)" if plan.id == CANDIDATE_ID else plan.label


def check_window(start: datetime, end: datetime, field_from: str = "from", field_to: str = "to") -> None:
    """A window on the rollups' 15-minute grid, at most WINDOW_MAX long."""
    for name, moment in ((field_from, start), (field_to, end)):
        if moment.tzinfo is None:
            raise InvalidArgument(f"{name} has no time zone; give an instant such as 2026-01-01T00:00Z")
        if not is_quarter_hour(moment):
            raise InvalidArgument(
                f"{name} {moment.isoformat()} is not on a 15-minute boundary (usage is kept per quarter hour); "
                "use e.g. a day's or a month's first instant"
            )
    if end <= start:
        raise InvalidArgument(f"{field_to} must be after {field_from} (got {start.isoformat()} → {end.isoformat()})")
    if end - start > WINDOW_MAX:
        raise InvalidArgument(
            f"{field_from}..{field_to} spans {(end - start).days} days; at most {WINDOW_MAX.days} days are re-priced "
            "per request (split a longer history into years)"
        )


# --- the simulation --------------------------------------------------------------------------------------------
def simulate_plan(
    engine: Engine,
    tenant_id: int,
    candidate: str | Mapping[str, Any],
    start: datetime,
    end: datetime,
    *,
    plan_code: str | None = None,
    threshold_pct: Decimal | None = None,
) -> Simulation:
    """What every customer subscribed in [start, end) pays under its current plans and would pay under
    `candidate`, per customer, per current plan and as a distribution of changes (module docstring)."""
    check_window(start, end)
    if threshold_pct is not None and threshold_pct < 0:
        raise InvalidArgument(f"more_than_pct must be 0 or more (a percentage), got {threshold_pct}")
    a, b = utc(start), utc(end)
    plan = load_candidate(engine, tenant_id, candidate)
    if plan_code is not None:
        list_plan_versions(engine, tenant_id, plan_code)  # NotFound names the unknown plan
    lives = window_segments(engine, tenant_id, a, b)
    versions: dict[int, PlanVersion] = {}
    kept: list[WindowLife] = []
    for life in lives:
        segs = []
        for seg in life.segments:
            v = versions.get(seg.plan_version_id)
            if v is None:
                v = versions[seg.plan_version_id] = get_plan_version_by_id(engine, tenant_id, seg.plan_version_id)
            if plan_code is None or v.code == plan_code:
                segs.append(seg)
        if any(s.state is State.ACTIVE for s in segs):
            kept.append(WindowLife(life.subscription, tuple(segs)))
    used = {s.plan_version_id for life in kept for s in life.segments}
    others = sorted({versions[v].label for v in used if versions[v].currency != plan.currency})
    if others:
        raise InvalidArgument(
            f"candidate prices in {plan.currency} but {', '.join(others)} price in another currency; "
            "compare like with like: pass plan_code (--current-plan) to simulate one plan's customers"
        )
    current_of: dict[str, tuple[datetime, str]] = {}
    for life in kept:
        for seg in life.segments:
            if seg.state is State.ACTIVE:
                cust = life.subscription.customer_external_id
                found = current_of.get(cust)
                if found is None or seg.start >= found[0]:
                    current_of[cust] = (seg.start, versions[seg.plan_version_id].label)
    scale = currency_unit(plan.currency).scale
    totals = _rate(engine, tenant_id, kept, versions, plan)
    changes = [
        CustomerChange(cust, current_of[cust][1], cur, sim, scale) for cust, (cur, sim) in sorted(totals.items())
    ]
    by_plan: dict[str, list[int]] = {}
    for c in changes:
        acc = by_plan.setdefault(c.plan, [0, 0, 0])
        acc[0] += 1
        acc[1] += c.current_minor
        acc[2] += c.simulated_minor
    plans = tuple(
        PlanTotal(label, n, _money(cur, scale), _money(sim, scale)) for label, (n, cur, sim) in sorted(by_plan.items())
    )
    more: tuple[CustomerChange, ...] = ()
    if threshold_pct is not None:
        more = tuple(
            sorted((c for c in changes if c.more_than(threshold_pct)), key=lambda c: (-c.difference_minor, c.customer))
        )
    current = _money(sum(c.current_minor for c in changes), scale)
    simulated = _money(sum(c.simulated_minor for c in changes), scale)
    return Simulation(
        candidate_label(plan), plan.currency, a, b, tuple(changes), plans, _distribution(changes), threshold_pct,
        current, simulated, more,
    )  # fmt: skip


def _rate(
    engine: Engine, tenant_id: int, lives: list[WindowLife], versions: dict[int, PlanVersion], plan: PlanVersion
) -> dict[str, tuple[int, int]]:
    """(current, simulated) minor units per customer, rated batch by batch of customers."""
    rater = Rater(engine, tenant_id, explain=False, plans=[plan] if plan.id == CANDIDATE_ID else [])
    current = {v: versions[v] for life in lives for v in (s.plan_version_id for s in life.segments)}
    substitute = {v: plan for v in current}
    by_customer: dict[str, list[WindowLife]] = {}
    for life in lives:
        by_customer.setdefault(life.subscription.customer_external_id, []).append(life)
    names = sorted(by_customer)
    out: dict[str, tuple[int, int]] = {}
    for k in range(0, len(names), BATCH_CUSTOMERS):
        checkpoint()
        batch = [life for name in names[k : k + BATCH_CUSTOMERS] for life in by_customer[name]]
        now_items = window_items(batch, current)
        what_if = window_items(batch, substitute)
        every: list[DueItem] = [*now_items, *what_if]
        if not every:
            continue
        rater.begin_batch(every)
        drafts = rater.draft(every)
        for i, (item, draft) in enumerate(zip(every, drafts, strict=True)):
            cust = item.customer_external_id
            cur, sim = out.get(cust, (0, 0))
            if i < len(now_items):
                cur += draft.subtotal
            else:
                sim += draft.subtotal
            out[cust] = (cur, sim)
    return out


__all__ = [
    "BATCH_CUSTOMERS",
    "CANDIDATE_ID",
    "FROM_ZERO",
    "WINDOW_MAX",
    "Bucket",
    "CustomerChange",
    "PlanTotal",
    "Simulation",
    "bucket_labels",
    "candidate_label",
    "check_window",
    "load_candidate",
    "pct_of",
    "simulate_plan",
]
