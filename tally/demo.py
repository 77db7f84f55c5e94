"""`tally demo`: a month of a small SaaS business, billed end to end through the public API.

Why it is built this way:

- Everything a customer of Tally would do goes through the wire: meters, plans, customers,
  subscriptions, wallets and invoices through the BillingService SDK (`tally.sdk`), usage
  through the ingest client (`tally.sdk.IngestClient`, columnar batches). Only what has no RPC is
  done in-process: creating the tenant and its API keys (`metering.tenant`). So the demo doubles as a
  smoke test of the API as integrators see it.
- The server runs in-process on a free port, on an embedded SQLite file in the demo's directory, with
  `event_age_max_days` raised so last month's usage is accepted. The database stays afterwards, so the
  CLI (`tally --database-url sqlite:///DIR/tally.db ...`) can explore what the demo produced.
- Every price parameter is a module constant below, and the customers and their usage come from pure
  functions of the seed (`customer_specs`, `usage_events`). The demo also writes every event it sent
  to DIR/events.csv, so a test can recompute each invoice with plain Decimal arithmetic, independently
  of the rating engine.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import shlex
import shutil
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from tally.sdk import BillingClient, UsageEvent
    from tally.server import RunningServer
    from tally.settings import Settings
    from tally.v1 import billing_pb2 as pb

T = TypeVar("T")

TENANT: Final = "demo"
CURRENCY: Final = "USD"

# --- the catalog: every price parameter, used to build the plans and by tests to recompute invoices ----------

#: developer: API calls in graduated tiers (up_to inclusive, None = the rest), tokens per unit.
CALL_TIERS: Final = ((Decimal(10_000), Decimal(0)), (Decimal(100_000), Decimal("0.001")), (None, Decimal("0.0005")))
TOKEN_PRICE: Final = Decimal("0.000002")
#: team: a flat monthly fee, billed in advance.
TEAM_FEE: Final = Decimal(49)
#: studio: images priced in points ("credits"), paid from the points wallet; money for what it cannot cover.
POINTS_UNIT: Final = "credits"
CREDITS_PER_USD: Final = Decimal(100)  # the ledger rate used by ConvertCredits
CREDIT_VALUE: Final = Decimal("0.01")  # the price's conversion_rate: USD per credit
CREDITS_PER_IMAGE: Final = Decimal(4)
#: studio customers that buy credits: USD topped up and converted (None = no top-up).
STUDIO_TOP_UPS: Final = (None, Decimal(5), Decimal(10), Decimal(20))
#: ads: impressions billed to the advertiser per started thousand (CPM).
IMPRESSIONS_PACKAGE: Final = Decimal(1000)
CPM: Final = Decimal("2.50")
#: viewer: the people watching the ads earn credits (the studio's points unit) per ad viewed, capped monthly.
#: They are extra customers beside the N of the mix, on a free plan whose earning rule credits their wallets.
VIEWERS: Final = ("viewer_01", "viewer_02", "viewer_03")
CREDITS_PER_VIEW: Final = Decimal("0.1")
VIEW_CREDITS_CAP: Final = Decimal(150)
#: support: a platform fee in advance, a fee per resolved ticket, and SLA credits on the fee when the
#: month's lowest availability reading misses a threshold (worst tier missed applies).
SUPPORT_FEE: Final = Decimal(200)
PER_TICKET: Final = Decimal("1.50")
SLA_TIERS: Final = ((Decimal("99.9"), Decimal(10)), (Decimal("99.0"), Decimal(25)))

PLANS: Final = ("developer", "team", "studio", "ads", "support")
#: Share of customers per plan after the first five (one of each).
PLAN_WEIGHTS: Final = (30, 20, 20, 15, 15)

METERS: Final = (
    # code, name, aggregation, value scale, unit
    ("api_calls", "API calls", "sum", 0, "calls"),
    ("tokens", "LLM tokens", "sum", 0, "tokens"),
    ("images", "Images generated", "count", 0, "images"),
    ("impressions", "Ad impressions", "sum", 0, "impressions"),
    ("ad_views", "Ads viewed", "count", 0, "views"),
    ("tickets_resolved", "Tickets resolved", "count", 0, "tickets"),
    ("availability", "Availability", "min", 3, "%"),
)


def _money(value: Decimal) -> str:
    return format(value, "f")


def plan_definitions() -> list[dict[str, Any]]:
    """The five plans, as CreatePlan definitions (prices from the constants above)."""
    tiers = [{"up_to": None if up is None else _money(up), "unit_amount": _money(p)} for up, p in CALL_TIERS]
    flat = {"model": "flat", "billing": "in_advance", "proration": "day"}
    return [
        {
            "code": "developer", "name": "Developer (pay as you go)", "currency": CURRENCY, "interval": "monthly",
            "charges": [
                {"code": "calls", "kind": "usage", "meter": "api_calls",
                 "price": {"model": "graduated", "tiers": tiers}},
                {"code": "tokens", "kind": "usage", "meter": "tokens",
                 "price": {"model": "per_unit", "unit_amount": _money(TOKEN_PRICE)}},
            ],
            "features": [{"key": "api", "kind": "boolean"}],
        },
        {
            "code": "team", "name": "Team (flat rate)", "currency": CURRENCY, "interval": "monthly",
            "charges": [{"code": "seat_fee", "kind": "flat", "price": {**flat, "amount_per_period": _money(TEAM_FEE)}}],
            "features": [{"key": "api", "kind": "boolean"}, {"key": "sso", "kind": "boolean"}],
        },
        {
            "code": "studio", "name": "Studio (credits)", "currency": CURRENCY, "interval": "monthly",
            "charges": [
                {"code": "images", "kind": "usage", "meter": "images",
                 "price": {"model": "points", "points_unit": POINTS_UNIT, "points_scale": 0, "currency": CURRENCY,
                           "conversion_rate": _money(CREDIT_VALUE),
                           "price": {"model": "per_unit", "unit_amount": _money(CREDITS_PER_IMAGE)}}},
            ],
            "features": [{"key": "generate", "kind": "balance", "unit": POINTS_UNIT}],
        },
        {
            "code": "ads", "name": "Advertiser (CPM)", "currency": CURRENCY, "interval": "monthly",
            "charges": [
                {"code": "impressions", "kind": "usage", "meter": "impressions",
                 "price": {"model": "package", "package_size": _money(IMPRESSIONS_PACKAGE),
                           "package_amount": _money(CPM)}},
            ],
        },
        {
            "code": "viewer", "name": "Viewer (earns credits per ad viewed)", "currency": CURRENCY,
            "interval": "monthly", "charges": [],
            "earning": [{"code": "watch", "meter": "ad_views", "unit": POINTS_UNIT,
                         "points_per_unit": _money(CREDITS_PER_VIEW), "cap_per_period": _money(VIEW_CREDITS_CAP)}],
        },
        {
            "code": "support", "name": "Support desk (per outcome, SLA)", "currency": CURRENCY, "interval": "monthly",
            "charges": [
                {"code": "platform", "kind": "flat", "price": {**flat, "amount_per_period": _money(SUPPORT_FEE)}},
                {"code": "resolutions", "kind": "usage", "meter": "tickets_resolved",
                 "price": {"model": "outcome", "kind": "per_outcome", "unit_amount": _money(PER_TICKET)}},
                {"code": "sla", "kind": "usage", "meter": "availability",
                 "price": {"model": "sla_credit", "metric": "availability_percent", "direction": "higher_is_better",
                           "affected_fee": _money(SUPPORT_FEE),
                           "tiers": [{"threshold": _money(t), "credit_percent": _money(c)} for t, c in SLA_TIERS]}},
            ],
        },
    ]  # fmt: skip


# --- customers and usage: pure functions of the seed -------------------------------------------------------

_FIRST: Final = ("Acme", "Blue", "Cedar", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
                 "Kite", "Lumen", "Maple", "Nova", "Orbit", "Pine", "Quartz", "River", "Summit", "Tidal")  # fmt: skip
_SECOND: Final = ("Labs", "Analytics", "Media", "Health", "Robotics", "Foods", "Logistics", "Studio", "Cloud",
                  "Bank", "Games", "Travel")  # fmt: skip


@dataclass(frozen=True, slots=True)
class CustomerSpec:
    external_id: str
    name: str
    plan: str
    top_up_usd: Decimal | None = None  # studio: USD topped up and converted to credits


def customer_specs(n: int, seed: int) -> list[CustomerSpec]:
    """N customers: one per plan first, then plans drawn by PLAN_WEIGHTS."""
    rng = random.Random(f"tally-demo:customers:{seed}")
    specs = []
    for i in range(n):
        plan = PLANS[i] if i < len(PLANS) else rng.choices(PLANS, PLAN_WEIGHTS)[0]
        name = f"{rng.choice(_FIRST)} {rng.choice(_SECOND)} {i + 1}"
        top_up = rng.choice(STUDIO_TOP_UPS) if plan == "studio" else None
        specs.append(CustomerSpec(f"cus_{i + 1:04d}", name, plan, top_up))
    return specs


@dataclass(frozen=True, slots=True)
class SentEvent:
    """One usage event as generated (timestamp in microseconds since the epoch, value "" = count 1)."""

    event_id: str
    customer: str
    meter: str
    timestamp_us: int
    value: str


def _spread(
    out: list[SentEvent], rng: random.Random, cid: str, meter: str, count: int, values: tuple[int, int] | None,
    start_us: int, span_us: int,
) -> None:  # fmt: skip
    """`count` events of `meter` at random instants of the span; values drawn in [low, high] (None: count)."""
    for k in range(count):
        value = "" if values is None else str(rng.randint(*values))
        out.append(SentEvent(f"{cid}-{meter}-{k}", cid, meter, start_us + rng.randrange(span_us), value))


def usage_events(specs: Sequence[CustomerSpec], start: datetime, end: datetime, seed: int) -> list[SentEvent]:
    """A month of usage per customer in [start, end), in customer order; deterministic for the seed."""
    start_us = int(start.timestamp()) * 1_000_000
    span_us = int((end - start).total_seconds()) * 1_000_000
    days = int((end - start).total_seconds()) // 86_400
    out: list[SentEvent] = []
    for spec in specs:
        rng = random.Random(f"tally-demo:usage:{seed}:{spec.external_id}")
        cid = spec.external_id
        if spec.plan == "developer":
            _spread(out, rng, cid, "api_calls", rng.randint(100, 700), (1, 1500), start_us, span_us)
            _spread(out, rng, cid, "tokens", rng.randint(50, 300), (500, 40_000), start_us, span_us)
        elif spec.plan == "studio":
            _spread(out, rng, cid, "images", rng.randint(20, 500), None, start_us, span_us)
        elif spec.plan == "ads":
            _spread(out, rng, cid, "impressions", rng.randint(50, 400), (20, 1_200), start_us, span_us)
        elif spec.plan == "support":
            _spread(out, rng, cid, "tickets_resolved", rng.randint(40, 300), None, start_us, span_us)
            # One availability reading a day; about a third of the customers have one bad day.
            bad_day = rng.randrange(days) if rng.random() < 0.35 else -1
            worst = rng.choice(("99.950", "99.820", "99.400", "98.700"))
            for day in range(days):
                reading = worst if day == bad_day else rng.choice(("100.000", "100.000", "99.990", "99.975"))
                ts = start_us + day * 86_400_000_000 + rng.randrange(86_400_000_000)
                out.append(SentEvent(f"{cid}-availability-{day}", cid, "availability", ts, reading))
    return out


def viewer_events(start: datetime, end: datetime, seed: int) -> list[SentEvent]:
    """The viewers' ad views in [start, end): some stay under the monthly cap, some pass it."""
    start_us = int(start.timestamp()) * 1_000_000
    span_us = int((end - start).total_seconds()) * 1_000_000
    out: list[SentEvent] = []
    for viewer in VIEWERS:
        rng = random.Random(f"tally-demo:views:{seed}:{viewer}")
        _spread(out, rng, viewer, "ad_views", rng.randint(300, 2500), None, start_us, span_us)
    return out


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """(first instant of last calendar month, first instant of this month), UTC."""
    this_month = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    return last_month, this_month


# --- the in-process server ----------------------------------------------------------------------------------


class _ServerThread:
    """`tally serve` in a background thread with its own asyncio loop, so the demo can be its client."""

    def __init__(self, settings: Settings) -> None:
        from tally.server import start

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tally-demo-server", daemon=True)
        self._thread.start()
        try:
            self.running: RunningServer = self._call(start(settings))
        except BaseException:
            self._close_loop()
            raise

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=120)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def stop(self) -> None:
        try:
            self._call(self.running.stop(2.0))
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


# --- the run ------------------------------------------------------------------------------------------------

_LEFTOVERS: Final = ("tally.db", "tally.db-wal", "tally.db-shm", "events.csv", "summary.json", "invoices")


@dataclass
class PlanTotals:
    customers: int = 0
    invoices: int = 0
    subtotal: Decimal = Decimal(0)
    credits: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    #: Of `total`: what the closing month earned (its usage in arrears and its own fees) and what next
    #: month's fees bill in advance (lines whose service period starts at the end of the closing month).
    closing: Decimal = Decimal(0)
    advance: Decimal = Decimal(0)


@dataclass
class DemoResult:
    directory: Path
    database_url: str
    tenant_id: int
    admin_key: str
    events_sent: int
    events_per_s: float
    plans: dict[str, PlanTotals]
    month_start: datetime
    month_end: datetime
    wallet_customer: str  # a studio customer who bought credits, to show with `tally wallet show`
    phases: dict[str, float] = field(default_factory=dict)
    invoice_files: list[Path] = field(default_factory=list)
    ingest_key: str = ""  # to replay events.csv with `tally send`

    @property
    def grand_total(self) -> PlanTotals:
        grand = PlanTotals()
        for p in self.plans.values():
            grand.customers += p.customers
            grand.invoices += p.invoices
            grand.subtotal += p.subtotal
            grand.credits += p.credits
            grand.total += p.total
            grand.closing += p.closing
            grand.advance += p.advance
        return grand


def _prepare(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise click.ClickException(f"--dir {directory} is a file; choose a directory")
    earlier = [name for name in _LEFTOVERS if (directory / name).exists()]
    if earlier and not force:
        raise click.ClickException(
            f"{directory} holds an earlier demo ({', '.join(earlier)}); "
            "pass --force to replace it or pick another --dir"
        )
    for name in earlier:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    (directory / "invoices").mkdir(parents=True, exist_ok=True)


def _to_usage(events: Sequence[SentEvent]) -> list[UsageEvent]:
    from tally.sdk import UsageEvent

    return [UsageEvent(e.event_id, e.customer, e.meter, e.timestamp_us, e.value or None) for e in events]


def run_demo(
    directory: Path,
    customers: int = 300,
    seed: int = 7,
    *,
    force: bool = False,
    now: datetime | None = None,
    console: Console | None = None,
) -> DemoResult:
    """Build the demo in `directory` and return what it did (the CLI prints it)."""
    from rich.console import Console

    from metering.tenant import create_api_key, create_tenant
    from tally.sdk import BillingClient
    from tally.settings import Settings

    out = console or Console()
    if customers < 1:
        raise click.ClickException("--customers must be at least 1")
    _prepare(directory, force)
    database_url = f"sqlite:///{(directory / 'tally.db').resolve()}"
    start, end = month_bounds(now or datetime.now(UTC))
    phases: dict[str, float] = {}
    clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        phases[name] = time.monotonic() - clock
        clock = time.monotonic()
        out.print(f"  done: {name} ({phases[name]:.2f} s)", highlight=False)

    # Old enough for the first instant of last month (at most 62 days ago), with a margin.
    age_days = (datetime.now(UTC) - start).days + 3
    base = Settings(database_url=database_url, port=0, sqlite_synchronous="NORMAL")
    settings = base.model_copy(
        update={"ingest": base.ingest.model_copy(update={"event_age_max_days": max(age_days, 35)})}
    )
    out.print(
        f"[bold]tally demo[/bold]: {customers} customers, seed {seed}, billing {start:%B %Y} (UTC) "
        f"in {directory.resolve()}"
    )
    server = _ServerThread(settings)
    try:
        engine = server.running.engine
        tenant = create_tenant(engine, TENANT)
        _, admin_key = create_api_key(engine, tenant.id, ("admin", "read"))
        _, ingest_key = create_api_key(engine, tenant.id, ("ingest",))
        specs = customer_specs(customers, seed)
        with BillingClient(server.target, admin_key, timeout_s=600) as api:
            api.define_points_unit(POINTS_UNIT, 0, name="Studio credits")
            api.set_conversion_rate(CURRENCY, POINTS_UNIT, CREDITS_PER_USD, start)
            _catalog_and_customers(api, specs, start, out)
            phase("setup (catalog, customers, subscriptions, wallets)")

            events = usage_events(specs, start, end, seed) + viewer_events(start, end, seed)
            _write_events(directory / "events.csv", events)
            phase("generate usage, write events.csv")

            sent, rate = _ingest(server.target, ingest_key, events, out)
            phase("ingest (gRPC, columnar batches)")

            earned = api.accrue_points(as_of=end)
            phase("points earned by viewers")
            out.print(
                f"viewers earned {', '.join(f'{t.amount} {t.unit}' for t in earned.totals) or 'nothing'} "
                f"from ads viewed ({earned.credited} credits, capped at {VIEW_CREDITS_CAP} {POINTS_UNIT} a month)"
            )

            run = api.run_invoice_cycle(as_of=end)
            phase("invoice run")
            if run.failed:
                raise click.ClickException(f"the invoice run could not rate {run.failed} items, e.g. {run.errors[0]}")
            out.print(
                f"invoice run as of {end:%Y-%m-%d %H:%M}Z: {run.invoices_created} invoices "
                "(one per customer and billing date)"
            )

            drafts = list(api.iter_invoices(status="draft"))
            finalized = [api.finalize_invoice(inv.id) for inv in _track(drafts, "finalizing invoices", out)]
            phase("finalize")

            files = _export(api, finalized, directory / "invoices", out)
            phase("export (PDF, CSV, JSON)")

        plans = _totals(specs, finalized, end)
        buyer = next((s.external_id for s in specs if s.top_up_usd is not None), specs[0].external_id)
        result = DemoResult(
            directory, database_url, tenant.id, admin_key, sent, rate, plans, start, end, buyer, phases, files
        )
        result.ingest_key = ingest_key
        _write_summary(directory / "summary.json", result, start, seed)
    finally:
        server.stop()
    return result


def _track(items: Sequence[T], label: str, out: Console | None) -> Iterable[T]:
    """The items, with a progress bar on `out` while they are worked through (none without a console)."""
    if out is None:
        return items
    from rich.progress import track

    return track(items, description=label, console=out, transient=True, disable=not out.is_terminal)


def _catalog_and_customers(
    api: BillingClient, specs: Sequence[CustomerSpec], start: datetime, out: Console | None = None
) -> None:
    """The seller, meters, plans, customers, subscriptions from `start`, studio wallets."""
    api.update_billing_profile(
        legal_name="Acme Cloud Ltd", tax_id="GB123456789", payment_terms_days=30,
        address={"line1": "1 Demo Street", "city": "London", "postal_code": "EC1A 1AA", "country": "GB"},
        payment_instructions="Bank transfer to Acme Cloud Ltd, sort code 00-00-00, account 12345678.",
    )  # fmt: skip
    for code, name, aggregation, scale, unit in METERS:
        api.create_meter(code, name=name, aggregation=aggregation, value_scale=scale, unit=unit)
    for definition in plan_definitions():
        api.create_plan(definition)
        api.publish_plan(definition["code"])
    for spec in _track(specs, "customers, subscriptions, wallets", out):
        api.create_customer(
            spec.external_id, name=spec.name, currency=CURRENCY, timezone="UTC",
            email=f"billing@{spec.external_id.replace('_', '-')}.example", metadata={"segment": spec.plan},
        )  # fmt: skip
        api.create_subscription(spec.external_id, spec.plan, start=start)
        if spec.top_up_usd is not None:
            api.top_up_wallet(f"topup-{spec.external_id}", spec.external_id, spec.top_up_usd, CURRENCY,
                              reference="card payment")  # fmt: skip
            api.convert_credits(f"convert-{spec.external_id}", spec.external_id, spec.top_up_usd, CURRENCY,
                                POINTS_UNIT)  # fmt: skip
    for viewer in VIEWERS:
        api.create_customer(viewer, name=viewer.replace("_", " ").title(), currency=CURRENCY, timezone="UTC")
        api.create_subscription(viewer, "viewer", start=start)


def _write_events(path: Path, events: Sequence[SentEvent]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        # `timestamp`: unix microseconds, which `tally send` tells by size, so the file replays as it is.
        writer.writerow(["event_id", "customer", "meter", "timestamp", "value"])
        writer.writerows((e.event_id, e.customer, e.meter, e.timestamp_us, e.value) for e in events)


def _ingest(target: str, key: str, events: Sequence[SentEvent], out: Console) -> tuple[int, float]:
    """Send every event; count events (no value) go in their own stream so every batch stays columnar
    (the columnar form cannot mix absent and present values). Returns (events accepted, events/s)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tally.sdk import BatchResult, IngestClient

    valued = _to_usage([e for e in events if e.value])
    counted = _to_usage([e for e in events if not e.value])
    started = time.monotonic()
    accepted = 0
    with (
        Progress(
            TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out
        ) as progress,
        IngestClient(target, key, batch_events_max=5000) as client,
    ):
        task = progress.add_task("events", total=len(events))

        def on_ack(result: BatchResult) -> None:
            progress.advance(task, result.size)

        for batch in (valued, counted):
            summary = client.send(batch, on_ack=on_ack)
            if summary.rejected:
                first = summary.errors[0]
                raise click.ClickException(
                    f"{summary.rejected} events were rejected, e.g. {first.event_id}: {first.field} {first.reason}"
                )
            accepted += summary.accepted + summary.duplicate
    seconds = time.monotonic() - started
    return accepted, accepted / seconds if seconds > 0 else 0.0


def _export(api: BillingClient, invoices: Sequence[pb.Invoice], folder: Path, out: Console | None = None) -> list[Path]:
    files = []
    for inv in _track(invoices, "exporting invoices", out):
        for fmt in ("pdf", "csv", "json"):
            doc = api.export_invoice(inv.id, fmt)
            path = folder / (doc.filename or f"{inv.label or inv.id}.{fmt}")
            path.write_bytes(doc.content)
            files.append(path)
    return files


def _totals(
    specs: Sequence[CustomerSpec], invoices: Sequence[pb.Invoice], month_end: datetime
) -> dict[str, PlanTotals]:
    """Per plan: its customers, and their invoices and amounts. An invoice is one customer's document for
    a billing date (it may group several subscriptions), so it counts under the plan of its customer. Its
    lines split its total between the closing month and next month's fees in advance, by service period."""
    end_s = int(month_end.timestamp())
    plans = {code: PlanTotals() for code in PLANS}
    plan_of = {spec.external_id: spec.plan for spec in specs}
    for spec in specs:
        plans[spec.plan].customers += 1
    for inv in invoices:
        p = plans[plan_of[inv.customer]]
        p.invoices += 1
        p.subtotal += Decimal(inv.subtotal)
        p.credits += Decimal(inv.credits_applied)
        p.total += Decimal(inv.total)
        for line in inv.lines:
            ahead = line.period_start.seconds >= end_s
            if ahead:
                p.advance += Decimal(line.amount)
            else:
                p.closing += Decimal(line.amount)
    return plans


def _write_summary(path: Path, result: DemoResult, start: datetime, seed: int) -> None:
    data = {
        "seed": seed,
        "month": f"{start:%Y-%m}",
        "database_url": result.database_url,
        "events": result.events_sent,
        "events_per_s": round(result.events_per_s),
        "plans": {
            code: {"customers": p.customers, "invoices": p.invoices, "subtotal": str(p.subtotal),
                   "credits": str(p.credits), "total": str(p.total), "closing_month": str(p.closing),
                   "next_month_in_advance": str(p.advance)}
            for code, p in result.plans.items()
        },
        "seconds": {name: round(s, 3) for name, s in result.phases.items()},
    }  # fmt: skip
    path.write_text(json.dumps(data, indent=2) + "\n")


def print_report(result: DemoResult, out: Console, directory_as_given: Path | None = None) -> None:
    """The summary: what the closing month earned apart from next month's fees billed in advance, then
    commands to explore and replay the demo that work from any directory (absolute paths throughout).
    `directory_as_given` is accepted for callers of the former signature and not used."""
    from rich.table import Table

    from tally.cli._common import count, money

    closing, following = f"{result.month_start:%b %Y}", f"{result.month_end:%b %Y}"
    table = Table(title=f"invoices by plan, {CURRENCY}: {closing} closes, {following} fees billed in advance")
    columns = ("plan", "customers", "invoices", f"{closing}\nrevenue", f"{following}\nin advance", "total")
    for name in columns:
        table.add_column(name, justify="left" if name == "plan" else "right", no_wrap=True)

    def row(label: str, p: PlanTotals) -> list[str]:
        return [label, count(p.customers), count(p.invoices), money(p.closing, CURRENCY),
                money(p.advance, CURRENCY), money(p.total, CURRENCY)]  # fmt: skip

    for code, p in result.plans.items():
        table.add_row(*row(code, p))
    table.add_section()
    grand = result.grand_total
    table.add_row(*row("[bold]total[/bold]", grand))
    out.print(table)
    out.print(
        f"{closing} revenue {money(grand.closing, CURRENCY)}; {following} fees in advance "
        f"{money(grand.advance, CURRENCY)}; credits and points already deducted: {money(grand.credits, CURRENCY)}",
        highlight=False,
    )
    out.print(
        f"ingested {count(result.events_sent)} events at {count(round(result.events_per_s))} events/s; "
        f"{sum(result.phases.values()):.2f} s in all",
        highlight=False,
    )
    directory = result.directory.resolve()
    events = shlex.quote(str(directory / "events.csv"))
    out.print(
        f"wrote {count(len(result.invoice_files))} files (PDF, CSV and JSON of each invoice) "
        f"to {directory / 'invoices'}/",
        highlight=False,
        soft_wrap=True,
    )
    url = shlex.quote(f"sqlite:///{directory / 'tally.db'}")
    out.print("\nexplore it from any directory (the database stays in place):", highlight=False)
    for command in (
        f"invoice list {TENANT}",
        f"invoice show {TENANT} 1",
        f"customer list {TENANT}",
        f"subscription list {TENANT} --customer cus_0001",
        f"plan show {TENANT} developer",
        f"wallet show {TENANT} {result.wallet_customer}",
        f"usage {TENANT} cus_0001 api_calls --from {result.month_start:%Y-%m-%dT%H:%MZ} "
        f"--to {result.month_end:%Y-%m-%dT%H:%MZ} --window day",
    ):
        out.print(f"  tally --database-url {url} {command}", highlight=False, soft_wrap=True)
    # Last month's events are older than a default server accepts (TALLY_INGEST__EVENT_AGE_MAX_DAYS).
    age_days = max((datetime.now(UTC) - result.month_start).days + 3, 35)
    out.print("\nreplay the events (every one comes back a duplicate):", highlight=False)
    out.print(
        f"  TALLY_INGEST__EVENT_AGE_MAX_DAYS={age_days} tally --database-url {url} serve &",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"  tally send {events} --api-key {result.ingest_key}", highlight=False, soft_wrap=True)
    out.print(
        f"  # from Python, with `serve` running: BillingClient('127.0.0.1:50051', '{result.admin_key}').get_invoice(1)",
        highlight=False,
        soft_wrap=True,
    )


def serve_console(result: DemoResult, out: Console, http_port: int = 8080, port: int = 0) -> None:
    """Keep the demo's database served (gRPC, the HTTP API and the web console) until Ctrl-C, after printing
    the console's URL, the keys to sign in with (the demo's admin key and a new read-only one) and a customer's
    portal link."""
    from metering.tenant import create_api_key
    from tally.console.portal._links import create_link
    from tally.db import make_engine
    from tally.server import serve
    from tally.settings import Settings

    engine = make_engine(result.database_url)
    try:
        _, read_key = create_api_key(engine, result.tenant_id, ("read",))
        # A day-long link into one customer's self-service portal, the way a product would make one
        # (CreatePortalSession): what the customer sees beside what finance sees.
        portal = create_link(engine, result.tenant_id, result.wallet_customer, datetime.now(UTC), ttl_s=86_400)
    finally:
        engine.dispose()
    settings = Settings(database_url=result.database_url, port=port, http_port=http_port)

    def ready(running: RunningServer) -> None:
        url = f"http://{settings.host}:{running.http_port}/console/"
        out.print(f"\n[bold]the finance console:[/bold] {url}", highlight=False, soft_wrap=True)
        out.print(f"  sign in with the admin key {result.admin_key}", highlight=False, soft_wrap=True)
        out.print(f"  or, to look without changing anything, the read key {read_key}", highlight=False, soft_wrap=True)
        out.print(
            f"[bold]a customer's portal[/bold] ({portal.customer}, valid 24 h): "
            f"http://{settings.host}:{running.http_port}{portal.path}",
            highlight=False,
            soft_wrap=True,
        )
        out.print(
            f"  the JSON API is under http://{settings.host}:{running.http_port}/v1/, gRPC on "
            f"{settings.host}:{running.port}; Ctrl-C stops the server",
            highlight=False,
            soft_wrap=True,
        )

    asyncio.run(serve(settings, on_ready=ready))
