"""Entitlements: may a customer use a feature now, answered from memory.

A customer's snapshot holds every feature their live subscriptions grant (trial and active count;
paused and cancelled grant nothing), resolved once from the database:

- boolean: granted while a live plan lists it.
- quota: `amount` of `meter` per billing period of the granting subscription
  (`BillingCycle.period_at(now)`); `used` is the meter's quantity over that whole period as the
  meter aggregates (count, sum, max, ...), so usage stamped later in the period counts too. Past the
  period's end the snapshot reloads and the quota starts over.
- limit: a cap on the meter's *current value*. For `latest` and `gauge` meters that is the latest
  reading, however old (a reading holds until the next one, as in gauge integration), summed over
  the meter's dimensions (25 seats in team A and 3 in team B are 28 seats). For every other
  aggregation there is no "reading", so the current value is the quantity of the current billing
  period (a limit on a sum meter behaves like a quota without a reset date on the wire).
- balance: the customer's available balance in `unit` over wallets and grants (as ledger
  `customer_totals` sums it: posted minus pending debits).

When two live subscriptions grant the same key, the larger amount wins and unlimited beats any
amount; if their kinds differ (a catalog mistake), the oldest subscription's grant is kept.

Freshness, in order of speed:
1. `invalidate(tenant, customer)` reloads synchronously: the API calls it after a plan change,
   cancel, pause, top-up or conversion, so the very next check sees the change.
2. Ingest through this process's IngestService: `IngestServicer` calls `submitted` before a batch is
   queued and `committed` after COMMIT (before the ack). The hook runs on the server's event loop, so it
   does O(1) work: it appends the batch and its outcome to the tenant's journal. A snapshot catches up
   with the journal when it is read (`snapshot`): the batches committed since it was loaded are added
   to its quota and limit quantities then, for that customer only, each batch indexed by customer once
   for every reader. The outcome names every event that did not go in (duplicates, conflicts and refusals
   by index), so exactly the accepted events are added: producers resend on every doubt, and a batch with
   duplicates must not cost every later check a reload. Whether a load already counted a batch is told by
   the database snapshot's horizon (`Horizon.holds(outcome.commit)`), or, without a commit id, by the
   batch having been queued after the load ended. The addition is exact or not made: a meter whose
   quantity is not a running count/sum/max/min, an outcome whose counts do not add up, or a batch that
   cannot be placed against the load marks the snapshot stale, and the next check reloads it instead
   of guessing. The journal keeps at most `JOURNAL_EVENTS_MAX` events (the refresher trims what every
   snapshot has read); a snapshot behind its start is reloaded.
3. Everything else (the CLI, another server, invoice runs drawing balances) is picked up by the
   refresher: snapshots older than `max_age_s` are reloaded in the background, so such a change is
   visible within `max_age_s + interval_s` plus one reload (about 6 s with the defaults).
Unknown customers are not cached: every check for one asks the database (and answers NOT_FOUND).

Warm start: the refresher first loads the snapshots of up to `Refresher.WARM_MAX` customers with a live
subscription (`warm`), so checks after a restart are lookups rather than loads; a customer past the bound
is loaded on their first check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from invoicing.catalog import BillingCycle, FeatureDefinition, Period, PlanVersion, get_plan_version_by_id
from invoicing.ledger.tables import ledger_accounts
from invoicing.ledger.unit import resolve_unit
from invoicing.subscriptions import State, Subscription, as_of, select_subscriptions, subscription_from_row
from invoicing.tables import customers, subscriptions
from metering.errors import NotFound
from metering.event import PreparedBatch
from metering.meter import Aggregation, Meter, list_meters
from metering.pending import pending_partials, pending_running_totals, snapshot
from metering.rollup import counted
from metering.store import BatchOutcome
from metering.tables import rollups
from metering.usage import to_us, usage

log = logging.getLogger(__name__)

LIVE = (State.TRIAL, State.ACTIVE)
#: Aggregations whose quantity a committed batch updates exactly from its own events.
RUNNING = (Aggregation.COUNT, Aggregation.SUM, Aggregation.MAX, Aggregation.MIN)
#: Limit meters whose current value is the latest reading rather than the period's quantity.
READINGS = (Aggregation.LATEST, Aggregation.GAUGE)
CHUNK = 500  # customers per bulk load query (well under SQLite's bound-parameter limit)

Key = tuple[int, str]  # tenant id, customer external id
#: Events of committed batches a tenant's journal keeps for snapshots still to read them (~300 bytes an
#: event as the server holds it): ~6 s at 80,000 events/s, past the refresher's `max_age_s` + `interval_s`,
#: after which every snapshot has been reloaded and the refresher trims what all of them have read.
JOURNAL_EVENTS_MAX = 500_000


@dataclass(slots=True)
class _Entry:
    """One committed batch in a tenant's journal, and what of it went in."""

    batch: PreparedBatch
    left_out: set[int]  # client indexes of the events not stored (duplicates, conflicts, refusals)
    exact: bool  # the outcome names every event left out, so the rest went in
    commit: int | None  # `BatchOutcome.commit`: placed against a load's `Horizon`
    number: int | None  # submission number in the journal; None if queued before the tenant was tracked
    #: Per customer, the first stored position, and each position's next of the same customer (-1: none):
    #: built on first read, without a list per customer (200,000 small lists a second kept the collector
    #: busy: four fifths of a first check's catch-up in a measurement).
    first: dict[str, int] | None = None
    next: list[int] = field(default_factory=list)

    def positions(self, customer: str) -> list[int]:
        first = self.first
        if first is None:  # benign race: two readers build the same index
            first, last = {}, dict[str, int]()
            index, left_out, batch = self.batch.index, self.left_out, self.batch
            after = [-1] * len(batch)
            for k, c in enumerate(batch.customers):
                if left_out and index[k] in left_out:
                    continue
                j = last.get(c)
                if j is None:
                    first[c] = k
                else:
                    after[j] = k
                last[c] = k
            self.next, self.first = after, first
        k = first.get(customer, -1)
        if k < 0:
            return _NONE
        out, after = [], self.next
        while k >= 0:
            out.append(k)
            k = after[k]
        return out


_NONE: list[int] = []


@dataclass(slots=True)
class _Journal:
    """A tenant's committed batches since the oldest position a snapshot still has to read, in commit order
    of their reports; positions (`seq`) count from the tenant's first tracked batch."""

    entries: list[_Entry] = field(default_factory=list)
    base: int = 0  # seq of entries[0]
    events: int = 0
    submitted: int = 0  # batches numbered by `submitted` so far
    inflight: dict[int, int] = field(default_factory=dict)  # id(batch) -> its number, until committed

    @property
    def end(self) -> int:
        return self.base + len(self.entries)

    def append(self, entry: _Entry) -> None:
        self.entries.append(entry)
        self.events += len(entry.batch)
        if self.events > JOURNAL_EVENTS_MAX:  # snapshots behind the new start reload when next read
            kept, drop = self.events, 0
            while kept > JOURNAL_EVENTS_MAX // 2 and drop < len(self.entries) - 1:
                kept -= len(self.entries[drop].batch)
                drop += 1
            self.trim(self.base + drop)

    def trim(self, upto: int) -> None:
        """Forget the entries before position `upto`."""
        drop = min(max(upto - self.base, 0), len(self.entries))
        if drop:
            self.events -= sum(len(e.batch) for e in self.entries[:drop])
            del self.entries[:drop]
            self.base += drop


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this customer use this feature now?"."""

    feature: str
    allowed: bool
    kind: str  # boolean | quota | limit | balance; "" when no live plan grants the feature
    granted: Decimal | None  # quota amount, limit cap or available balance; None for boolean or unlimited
    used: Decimal | None  # quota: used this period; limit: current value; None otherwise
    remaining: Decimal | None  # None for boolean or unlimited
    reason: str
    resets_at: datetime | None  # quota: end of the current period


@dataclass(slots=True)
class Grant:
    """One feature as the customer holds it: the winning plan's terms and the current measurement."""

    feature: FeatureDefinition
    plan: str  # label of the granting plan version, for reasons
    period: Period | None  # quota, and limits on non-reading meters: the counting window
    used: Decimal = Decimal(0)  # quota/limit: quantity or current value; balance: available
    meter: Meter | None = None
    #: The period in microseconds, computed once: catching up compares every committed event with it.
    window_us: tuple[int, int] | None = None

    @property
    def counts_period(self) -> bool:
        return self.period is not None and self.meter is not None

    def window(self) -> tuple[int, int]:
        if self.window_us is None:
            assert self.period is not None
            self.window_us = (to_us(self.period.start), to_us(self.period.end))
        return self.window_us


@dataclass(slots=True)
class Snapshot:
    customer: str
    features: dict[str, Grant]
    live: int  # live (trial/active) subscriptions
    loaded_at: float  # time.monotonic()
    valid_until: datetime | None  # the earliest instant something changes by itself (period end, trial, ...)
    stale: bool = False
    used_at: float = field(default=0.0)
    #: Which commits the database snapshot it was measured in holds (None: unknown).
    horizon: Horizon | None = None
    #: The tenant journal's position up to which this snapshot holds every committed batch.
    seq: int = 0
    #: Batches numbered up to this were queued before the load ended: one of them reported without
    #: `BatchOutcome.commit` may or may not be in the load, and makes the snapshot stale.
    queued_before: int = 0
    #: The grants that count usage over a period and their meters, found once (asked per journal batch).
    counting: list[Grant] | None = None
    counting_meters: frozenset[str] = frozenset()

    def counting_grants(self) -> list[Grant]:
        if self.counting is None:
            self.counting = [g for g in self.features.values() if g.counts_period]
            self.counting_meters = frozenset(g.meter.code for g in self.counting if g.meter is not None)
        return self.counting


@dataclass(frozen=True, slots=True)
class Horizon:
    """Which commits one database snapshot holds, to tell a committed batch the snapshot already counted
    from one it did not (`BatchOutcome.commit`): on SQLite the highest rowid of `events` it sees (one
    writer: rowids only grow); on PostgreSQL its `pg_current_snapshot()` (xmin, xmax, in-progress ids)."""

    upto: int
    xmax: int | None = None
    running: frozenset[int] = frozenset()

    def holds(self, commit: int) -> bool:
        if self.xmax is None:
            return commit <= self.upto
        return commit < self.upto or (commit < self.xmax and commit not in self.running)

    @staticmethod
    def read(conn: Connection) -> Horizon:
        """The horizon of `conn`'s snapshot; call it first, so the snapshot is taken by this statement."""
        if conn.dialect.name == "postgresql":
            xmin, xmax, xip = str(conn.exec_driver_sql("SELECT pg_current_snapshot()::text").scalar_one()).split(":")
            return Horizon(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))
        return Horizon(int(conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM events").scalar_one()))


def _fmt(value: Decimal) -> str:
    return format(value, "f")


def decide(snapshot: Snapshot, feature: str, requested: Decimal | None) -> Decision:
    """Pure arithmetic on a snapshot; `requested` None means 1 for quota and limit, "any" for balance."""
    grant = snapshot.features.get(feature)
    if grant is None:
        why = "no live subscription" if not snapshot.live else "none of its live plans grants it"
        reason = f"customer {snapshot.customer!r} is not entitled to {feature!r}: {why}"
        return Decision(feature, False, "", None, None, None, reason, None)
    f = grant.feature
    if f.kind == "boolean":
        return Decision(feature, True, "boolean", None, None, None, "", None)
    if f.kind == "balance":
        available = grant.used
        need = requested
        ok = available > 0 if need is None else available >= need
        reason = ""
        if not ok:
            reason = (
                f"the {f.unit} balance is {_fmt(available)}; top up the wallet to use {feature!r}"
                if need is None or available <= 0
                else f"requested {_fmt(need)} {f.unit} but only {_fmt(available)} is available; top up the wallet"
            )
        return Decision(feature, ok, "balance", available, None, available, reason, None)
    need = Decimal(1) if requested is None else requested
    resets = grant.period.end if f.kind == "quota" and grant.period is not None else None
    used = grant.used
    if f.amount is None:
        return Decision(feature, True, f.kind, None, used, None, "", resets)
    remaining = max(f.amount - used, Decimal(0))
    ok = used + need <= f.amount
    reason = ""
    if not ok and f.kind == "quota":
        until = "" if resets is None else f" until {resets.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"
        reason = (
            f"quota of {_fmt(f.amount)} {f.meter} used up{until}"
            if remaining == 0
            else f"requested {_fmt(need)} but only {_fmt(remaining)} of the quota of {_fmt(f.amount)} {f.meter} "
            f"is left{until}"
        )
    elif not ok:
        reason = (
            f"limit of {_fmt(f.amount)} {f.meter} reached (current value {_fmt(used)})"
            if remaining == 0
            else f"requested {_fmt(need)} would take {f.meter} to {_fmt(used + need)}, over the limit of "
            f"{_fmt(f.amount)}"
        )
    return Decision(feature, ok, f.kind, f.amount, used, remaining, reason, resets)


# --- loading -------------------------------------------------------------------------------------------------
class Loader:
    """Builds snapshots from the database, many customers per query.

    Published plan versions never change, so they are cached for good; meters are re-read at most
    every `meters_ttl_s` (a new meter only matters once a plan using it is published).
    """

    def __init__(self, engine: Engine, meters_ttl_s: float = 5.0) -> None:
        self.engine = engine
        self._plans: dict[int, PlanVersion] = {}
        self._meters: dict[int, tuple[float, dict[str, Meter]]] = {}
        self._scales: dict[tuple[int, str], int] = {}
        self._meters_ttl_s = meters_ttl_s

    def plan(self, tenant_id: int, version_id: int) -> PlanVersion:
        found = self._plans.get(version_id)
        if found is None:
            found = self._plans[version_id] = get_plan_version_by_id(self.engine, tenant_id, version_id)
        return found

    def meters(self, tenant_id: int) -> dict[str, Meter]:
        cached = self._meters.get(tenant_id)
        if cached is None or time.monotonic() - cached[0] > self._meters_ttl_s:
            cached = self._meters[tenant_id] = (
                time.monotonic(),
                {m.code: m for m in list_meters(self.engine, tenant_id)},
            )
        return cached[1]

    def _scale(self, conn: Connection, tenant_id: int, unit: str) -> int:
        found = self._scales.get((tenant_id, unit))
        if found is None:
            found = self._scales[(tenant_id, unit)] = resolve_unit(conn, tenant_id, unit).scale
        return found

    def load(self, tenant_id: int, external_ids: Sequence[str], at: datetime) -> dict[str, Snapshot]:
        """Snapshots of the customers that exist (missing ones are simply absent)."""
        out: dict[str, Snapshot] = {}
        for k in range(0, len(external_ids), CHUNK):
            out.update(self._load_chunk(tenant_id, list(external_ids[k : k + CHUNK]), at))
        return out

    def _load_chunk(self, tenant_id: int, ids: list[str], at: datetime) -> dict[str, Snapshot]:
        loaded_at = time.monotonic()
        meters = self.meters(tenant_id)
        with snapshot(self.engine) as conn:  # rollups and the events not yet folded into them, at one instant
            horizon = Horizon.read(conn)
            known = set(
                conn.execute(
                    select(customers.c.external_id).where(
                        customers.c.tenant_id == tenant_id, customers.c.external_id.in_(ids)
                    )
                ).scalars()
            )
            rows = conn.execute(
                select_subscriptions(tenant_id)
                .where(customers.c.external_id.in_(sorted(known)))
                .order_by(subscriptions.c.id)
            ).all()
            subs: dict[str, list[Subscription]] = {}
            for r in rows:
                sub = subscription_from_row(r)
                subs.setdefault(sub.customer_external_id, []).append(sub)
            snaps = {c: self._resolve(tenant_id, c, subs.get(c, []), meters, at, loaded_at) for c in known}
            self._measure(conn, tenant_id, snaps, at)
        for snap in snaps.values():
            snap.horizon = horizon
        return snaps

    def _resolve(
        self, tenant_id: int, customer: str, subs: list[Subscription], meters: dict[str, Meter], at: datetime,
        loaded_at: float,
    ) -> Snapshot:  # fmt: skip
        features: dict[str, Grant] = {}
        changes: list[datetime] = []
        live = 0
        for recorded in subs:
            changes += [t for t in (recorded.started_at, recorded.trial_ends_at, recorded.ends_at,
                                    recorded.pending_change_at) if t is not None and t > at]  # fmt: skip
            sub = as_of(recorded, at)
            if sub.state not in LIVE or sub.started_at > at:
                continue
            live += 1
            plan = self.plan(tenant_id, sub.plan_version_id)
            period = BillingCycle.from_instant(sub.billing_anchor, plan.interval, sub.timezone).period_at(at)
            for f in plan.features:
                meter = meters.get(f.meter) if f.meter else None
                counts = f.kind == "quota" or (
                    f.kind == "limit" and meter is not None and meter.aggregation not in READINGS
                )
                grant = Grant(f, plan.label, period if counts else None, Decimal(0), meter)
                if counts:
                    changes.append(period.end)
                current = features.get(f.key)
                if current is None or _wins(grant.feature, current.feature):
                    features[f.key] = grant
        return Snapshot(customer, features, live, loaded_at, min(changes, default=None))

    def _measure(self, conn: Connection, tenant_id: int, snaps: dict[str, Snapshot], at: datetime) -> None:
        """Fill `used`: period quantities grouped by (meter, window), readings, balances; a few queries."""
        windows: dict[tuple[str, int, int], list[Grant]] = {}
        by_customer: dict[int, str] = {}
        readings: dict[str, list[tuple[str, Grant]]] = {}
        balances: list[tuple[str, Grant]] = []
        for customer, snap in snaps.items():
            for g in snap.features.values():
                f = g.feature
                if f.kind == "balance":
                    balances.append((customer, g))
                elif g.meter is None:
                    continue
                elif g.period is not None:
                    window = (g.meter.code, to_us(g.period.start), to_us(g.period.end))
                    windows.setdefault(window, []).append(g)
                    by_customer[id(g)] = customer
                elif f.kind == "limit":
                    readings.setdefault(g.meter.code, []).append((customer, g))
        r = rollups.c
        for (code, start_us, end_us), grants in windows.items():
            meter = grants[0].meter
            assert meter is not None
            wanted = sorted({by_customer[id(g)] for g in grants})
            if meter.aggregation in RUNNING:
                found = {
                    row.customer: row
                    for row in conn.execute(
                        select(
                            r.customer,
                            func.sum(r.events).label("events"),
                            func.sum(r.sum_units).label("sum_units"),
                            func.max(r.max_units).label("max_units"),
                            func.min(r.min_units).label("min_units"),
                        )
                        .where(
                            r.tenant_id == tenant_id,
                            r.meter == code,
                            r.customer.in_(wanted),
                            r.bucket_us >= start_us,
                            r.bucket_us < end_us,
                        )
                        .group_by(r.customer)
                    )
                }
                totals = {c: [int(row.events or 0), row.sum_units, row.max_units, row.min_units]
                          for c, row in found.items()}  # fmt: skip
                sums = pending_running_totals(conn, tenant_id, meter=code, spec=meter.spec, customers=wanted,
                                              start_us=start_us, end_us=end_us)  # fmt: skip
                if sums is None:
                    pend = pending_partials(conn, tenant_id, meter=code, customers=wanted, specs={code: meter.spec})
                    sums = {}
                    for key, part in pend.items():
                        if start_us <= key[3] < end_us:
                            one = [part.events, part.sum_units, part.max_units, part.min_units]
                            _merge(sums.setdefault(key[1], [0, 0, one[2], one[3]]), one)
                for customer, one in sums.items():
                    acc = totals.setdefault(customer, [0, None, None, None])
                    _merge(acc, one)
                for g in grants:
                    total = totals.get(by_customer[id(g)])
                    g.used = Decimal(0) if total is None else _running(meter, _Totals(*total))
            else:  # latest, unique_count, gauge over the period: the usage query knows them
                for g in grants:
                    assert g.period is not None
                    rows = usage(self.engine, tenant_id, by_customer[id(g)], code, g.period.start, g.period.end)
                    g.used = rows[0].quantity if rows else Decimal(0)
        for code, pairs in readings.items():
            meter = pairs[0][1].meter
            assert meter is not None
            current = _readings(conn, tenant_id, code, sorted({c for c, _ in pairs}), to_us(at))
            for customer, g in pairs:
                g.used = Decimal(current.get(customer, 0)).scaleb(-meter.value_scale)
        if balances:
            a = ledger_accounts.c
            wanted = sorted({c for c, _ in balances})
            available = {
                (row.customer, row.unit): int(row.available)
                for row in conn.execute(
                    select(
                        a.customer,
                        a.unit,
                        func.sum(a.credits_posted - a.debits_posted - a.debits_pending).label("available"),
                    )
                    .where(a.tenant_id == tenant_id, a.customer.in_(wanted))
                    .group_by(a.customer, a.unit)
                )
            }
            for customer, g in balances:
                unit = g.feature.unit or ""
                scaled = available.get((customer, unit), 0)
                g.used = Decimal(scaled).scaleb(-self._scale(conn, tenant_id, unit)) if scaled else Decimal(0)


def _merge(acc: list[Any], one: list[int]) -> None:
    """Add one [events, sum, max, min] to a running one whose sum, max and min may still be None."""
    acc[0] += one[0]
    acc[1] = one[1] + int(acc[1] or 0)
    acc[2] = one[2] if acc[2] is None else max(int(acc[2]), one[2])
    acc[3] = one[3] if acc[3] is None else min(int(acc[3]), one[3])


def _wins(candidate: FeatureDefinition, current: FeatureDefinition) -> bool:
    """Two live plans grant the same key: the larger amount wins, unlimited beats any amount."""
    if candidate.kind != current.kind or current.kind in ("boolean", "balance"):
        return False
    if current.amount is None:
        return False
    return candidate.amount is None or candidate.amount > current.amount


@dataclass(frozen=True, slots=True)
class _Totals:
    events: int
    sum_units: int | None
    max_units: int | None
    min_units: int | None


def _running(meter: Meter, row: Any) -> Decimal:
    agg = meter.aggregation
    if agg is Aggregation.COUNT:
        return Decimal(int(row.events or 0))
    units = {Aggregation.SUM: row.sum_units, Aggregation.MAX: row.max_units, Aggregation.MIN: row.min_units}[agg]
    return Decimal(int(units or 0)).scaleb(-meter.value_scale)


def _readings(conn: Connection, tenant_id: int, meter: str, wanted: list[str], before_us: int) -> dict[str, int]:
    """Per customer, the latest reading of each dimension of a latest/gauge meter at `before_us`, summed."""
    r = rollups.c
    mine = (r.tenant_id == tenant_id, r.meter == meter, r.customer.in_(wanted), r.bucket_us <= before_us)
    last = (
        select(r.customer, r.group_key, func.max(r.bucket_us).label("bucket_us"))
        .where(*mine)
        .group_by(r.customer, r.group_key)
        .subquery()
    )
    latest: dict[tuple[str, str], tuple[int, int, str, int]] = {}  # -> bucket, ts, event id, units
    for row in conn.execute(
        select(r.customer, r.group_key, r.bucket_us, r.latest_ts_us, r.latest_event_id, r.latest_units).where(
            *mine, r.customer == last.c.customer, r.group_key == last.c.group_key, r.bucket_us == last.c.bucket_us
        )
    ):
        latest[(row.customer, row.group_key)] = (int(row.bucket_us), int(row.latest_ts_us), row.latest_event_id,
                                                 int(row.latest_units))  # fmt: skip
    for key, part in pending_partials(conn, tenant_id, meter=meter, customers=wanted).items():
        if key[3] > before_us:
            continue
        reading = (key[3], part.latest_ts_us, part.latest_event_id, part.latest_units)
        held = latest.get((key[1], key[2]))
        if held is None or reading[:3] > held[:3]:
            latest[(key[1], key[2])] = reading
    out: dict[str, int] = {}
    for (customer, _), reading in latest.items():
        out[customer] = out.get(customer, 0) + reading[3]
    return out


# --- the cache -----------------------------------------------------------------------------------------------
class EntitlementCache:
    """Per (tenant, customer) snapshots in a dict; `check` is a lookup and some arithmetic.

    Thread-safe: checks run on the API's thread pool, ingest hooks on the server's event loop and
    the refresher on its own thread. Snapshots are replaced whole under `_lock`, journals are appended
    to and a snapshot's `used` is caught up under the same lock.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_age_s: float = 5.0,
        interval_s: float = 1.0,
        idle_s: float = 600.0,
        clock: Any = None,
    ) -> None:
        self.loader = Loader(engine)
        self.max_age_s = max_age_s
        self.interval_s = interval_s
        self.idle_s = idle_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._entries: dict[Key, Snapshot] = {}
        self._lock = threading.Lock()
        #: tenant -> its committed batches not yet read by every snapshot (tenants with a load only).
        self._journals: dict[int, _Journal] = {}
        #: keys being loaded -> True once something invalidated them meanwhile (the load may have read the
        #: old state: the new snapshot is stale).
        self._loading: dict[Key, bool] = {}
        self.loads = 0  # snapshots built (for tests and the benchmark)

    # -- reads --
    def check(self, tenant_id: int, customer: str, feature: str, requested: Decimal | None = None) -> Decision:
        return decide(self.snapshot(tenant_id, customer), feature, requested)

    def entitlements(self, tenant_id: int, customer: str) -> list[Decision]:
        snap = self.snapshot(tenant_id, customer)
        return [decide(snap, key, None) for key in sorted(snap.features)]

    def snapshot(self, tenant_id: int, customer: str) -> Snapshot:
        """The customer's snapshot; loaded (one database round) on a miss, when stale or past its validity."""
        key = (tenant_id, customer)
        snap = self._entries.get(key)
        if snap is not None:
            self._catch_up(key, snap)
        for _ in range(2):  # a load that a batch it cannot place overtook is retried once
            if snap is not None and not self._expired(snap):
                break
            snap = self._reload(tenant_id, [customer]).get(customer)
            if snap is None:
                raise NotFound(f"no customer {customer!r}; create it first (CreateCustomer)")
            self._catch_up(key, snap)
        assert snap is not None
        snap.used_at = time.monotonic()
        return snap

    def _expired(self, snap: Snapshot) -> bool:
        return snap.stale or (snap.valid_until is not None and self._clock() >= snap.valid_until)

    def preload(self, tenant_id: int, customers: Sequence[str]) -> int:
        """Load many customers in bulk (a few queries per 500), e.g. to warm a server; returns how many exist."""
        return len(self._reload(tenant_id, list(customers)))

    def warm(self, customers_max: int) -> int:
        """Load the snapshots of up to `customers_max` customers with a live subscription (the newest
        subscriptions first), so that a server's first checks after a start are answered from memory
        instead of each paying a load (under ingest a load also adds the unfolded events: tens of ms).
        Bounded because the refresher reloads every cached snapshot each `max_age_s`; customers past the
        bound are loaded on their first check, as before. Returns how many were loaded."""
        if customers_max <= 0:
            return 0
        s, c = subscriptions.c, customers.c
        query = (
            select(c.tenant_id, c.external_id)
            .select_from(subscriptions.join(customers, customers.c.id == s.customer_id))
            .where(s.state.in_([State.TRIAL.value, State.ACTIVE.value]))
            .group_by(c.tenant_id, c.external_id)
            .order_by(func.max(s.id).desc())
            .limit(customers_max)
        )
        with self.loader.engine.connect() as conn:
            rows = conn.execute(query).all()
        by_tenant: dict[int, list[str]] = {}
        for tenant_id, external_id in rows:
            if (tenant_id, external_id) not in self._entries:
                by_tenant.setdefault(int(tenant_id), []).append(str(external_id))
        return sum(len(self._reload(tenant_id, ids)) for tenant_id, ids in by_tenant.items())

    # -- changes --
    def invalidate(self, tenant_id: int, customer: str) -> None:
        """Reload now, so the next check sees a change made by this process (a ChangeListener)."""
        with self._lock:
            if (tenant_id, customer) in self._loading:
                self._loading[(tenant_id, customer)] = True  # a load under way may have read the old state
        if (tenant_id, customer) in self._entries:
            self._reload(tenant_id, [customer])

    def _reload(self, tenant_id: int, ids: list[str]) -> dict[str, Snapshot]:
        keys = [(tenant_id, c) for c in ids]
        with self._lock:
            journal = self._journals.setdefault(tenant_id, _Journal())
            start = journal.end  # every batch reported before this is in the load's database snapshot
            for k in keys:
                self._loading[k] = False
        try:
            snaps = self.loader.load(tenant_id, ids, self._clock())
        except BaseException:
            with self._lock:
                for k in keys:
                    self._loading.pop(k, None)
            raise
        self.loads += len(snaps)
        with self._lock:
            for k in keys:
                dirty = self._loading.pop(k, False)
                snap = snaps.get(k[1])
                if snap is None:
                    self._entries.pop(k, None)
                    continue
                # Batches reported from `start` on are read from the journal by `_catch_up`, which places
                # each against the load's horizon, or by whether it was queued after the load ended.
                snap.seq = start
                snap.queued_before = journal.submitted
                snap.stale = dirty
                snap.used_at = time.monotonic()
                self._entries[k] = snap
        return snaps

    def _catch_up(self, key: Key, snap: Snapshot) -> None:
        """Add the journal's batches the snapshot has not read; stale when one cannot be added exactly."""
        journal = self._journals.get(key[0])
        if journal is None or snap.stale or snap.seq >= journal.end:
            return
        customer = key[1]
        for entry in journal.entries[max(snap.seq - journal.base, 0) :]:  # index outside the lock
            entry.positions(customer)
        with self._lock:
            if snap.stale or snap.seq >= journal.end:
                return
            if snap.seq < journal.base:  # trimmed past it: reload
                snap.stale = True
                return
            for entry in journal.entries[snap.seq - journal.base :]:
                positions = entry.positions(customer)
                if not positions:
                    continue
                if entry.commit is not None and snap.horizon is not None:
                    if snap.horizon.holds(entry.commit):
                        continue  # the load counted it
                elif entry.number is None or entry.number <= snap.queued_before:
                    snap.stale = True  # queued before the load ended and not placeable: it may be in it
                    return
                if not self._apply(snap, entry.batch, positions, entry.exact):
                    snap.stale = True
                    return
            snap.seq = journal.end

    # -- ingest hooks (tally.api.ingest.CommitHook; on the server's event loop: O(1) per batch) --
    def submitted(self, batch: PreparedBatch) -> None:
        """A batch is about to be queued: number it, so a load can tell whether it was queued after it."""
        journal = self._journals.get(batch.tenant_id)
        if journal is None:  # no snapshot of this tenant was ever loaded: one dict lookup
            return
        with self._lock:
            journal.submitted += 1
            journal.inflight[id(batch)] = journal.submitted

    def committed(self, batch: PreparedBatch, outcome: BatchOutcome | None) -> None:
        """A queued batch is settled: `outcome` after COMMIT, None when the commit failed (unknown)."""
        journal = self._journals.get(batch.tenant_id)
        if journal is None:
            return
        with self._lock:
            number = journal.inflight.pop(id(batch), None)
        if outcome is not None and (outcome.accepted == 0 or outcome.refused):
            return  # nothing went in
        # The events that went in: all but the duplicates and the errors, each known by its client index.
        left_out: set[int] = set()
        exact = outcome is not None
        if outcome is not None and (outcome.duplicates or outcome.errors):
            left_out = {*outcome.duplicates, *(e.index for e in outcome.errors)}
        if outcome is not None:
            exact = len(outcome.duplicates) == outcome.duplicate
            stored = len(batch) - (sum(1 for i in batch.index if i in left_out) if left_out else 0)
            exact = exact and outcome.accepted == stored
        entry = _Entry(batch, left_out, exact, None if outcome is None else outcome.commit, number)
        with self._lock:
            journal.append(entry)

    @staticmethod
    def _apply(snap: Snapshot, batch: PreparedBatch, positions: list[int], exact: bool) -> bool:
        """Add the batch's events to the snapshot's period quantities; False when that cannot be exact."""
        grants = snap.counting_grants()
        if not grants:
            return True
        meters, of = snap.counting_meters, batch.meters
        mine = [k for k in positions if of[k] in meters]
        if not mine:
            return True
        if not exact:
            return False
        ts, meters_of, props = batch.ts_us, batch.meters, batch.properties
        for g in grants:
            meter, period = g.meter, g.period
            assert meter is not None and period is not None
            code = meter.code
            here = [k for k in mine if meters_of[k] == code]
            if not here:
                continue  # the batch has no event of this grant's meter
            if meter.aggregation not in RUNNING:
                return False
            spec = batch.specs.get(code)
            if spec is None or spec.value_scale != meter.value_scale or spec.aggregation is not meter.aggregation:
                return False
            start_us, end_us = g.window()
            here = [k for k in here if start_us <= ts[k] < end_us]
            if spec.filter or spec.group_by:
                here = [k for k in here if counted(spec, props[k])[0]]
            if not here:
                continue
            if meter.aggregation is Aggregation.COUNT:
                g.used += len(here)
            elif meter.aggregation is Aggregation.SUM:  # integers added exactly, scaled once
                g.used += Decimal(sum(batch.value_units[k] for k in here)).scaleb(-meter.value_scale)
            elif meter.aggregation is Aggregation.MAX:
                value = Decimal(max(batch.value_units[k] for k in here)).scaleb(-meter.value_scale)
                if value < 0 and g.used == 0:
                    return False  # 0 may mean "no event yet", and then the maximum is this value
                g.used = max(g.used, value)
            else:
                return False  # min: an empty period reads 0, so the first event cannot be told apart
        return True

    # -- refresher --
    def refresh(self) -> int:
        """Reload snapshots older than `max_age_s` (or behind their journal), drop those unused for `idle_s`,
        and trim each journal to what every snapshot of its tenant has read; returns reloads."""
        now = time.monotonic()
        due: dict[int, list[str]] = {}
        with self._lock:
            for key, snap in list(self._entries.items()):
                journal = self._journals.get(key[0])
                if now - snap.used_at > self.idle_s:
                    del self._entries[key]
                elif (
                    snap.stale
                    or now - snap.loaded_at >= self.max_age_s
                    or (journal is not None and snap.seq < journal.base)
                ):
                    due.setdefault(key[0], []).append(key[1])
        n = 0
        for tenant_id, ids in due.items():
            n += len(self._reload(tenant_id, ids))
        with self._lock:
            read: dict[int, int] = {}
            for (tenant_id, _), snap in self._entries.items():
                read[tenant_id] = min(read.get(tenant_id, snap.seq), snap.seq)
            for tenant_id, journal in self._journals.items():
                journal.trim(read.get(tenant_id, journal.end))
        return n

    def __len__(self) -> int:
        return len(self._entries)


class Refresher:
    """The background Worker that keeps snapshots within `max_age_s` of the database."""

    #: Customers whose snapshots are loaded when the refresher starts (`EntitlementCache.warm`): at the
    #: measured ~8,000 loads/s, refreshing them every `max_age_s` (5 s) costs about 5 % of a core.
    WARM_MAX = 2_000

    def __init__(self, cache: EntitlementCache, warm_max: int | None = None) -> None:
        self.cache = cache
        self.warm_max = self.WARM_MAX if warm_max is None else warm_max
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="entitlement-refresher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            loaded = self.cache.warm(self.warm_max)
            if loaded:
                log.info("entitlements: %d customers' snapshots loaded at start", loaded)
        except Exception:  # a cold cache is slower, never wrong: checks load what they need
            log.exception("warming the entitlement cache failed")
        while not self._stop.wait(self.cache.interval_s):
            try:
                self.cache.refresh()
            except Exception:  # a database hiccup must not kill the refresher; the next round retries
                log.exception("entitlement refresh failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


__all__ = ["Decision", "EntitlementCache", "Grant", "Loader", "Refresher", "Snapshot", "decide"]
