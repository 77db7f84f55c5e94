"""`tally demo` end to end, and every invoice it wrote recomputed independently.

The expected invoices are computed here with plain Decimal arithmetic from the events the demo says it
sent (DIR/events.csv) and the demo's published price constants: no rating engine, no Tally code
beyond reading the stored invoices back.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from invoicing.catalog import get_plan_version_by_id
from invoicing.documents import Invoice, list_invoices
from invoicing.subscriptions import list_subscriptions
from metering.tenant import get_tenant
from tally import demo
from tally.cli import main
from tally.db import make_engine

N = 25
SEED = 4
CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def graduated(quantity: Decimal, tiers: tuple[tuple[Decimal | None, Decimal], ...]) -> Decimal:
    total, lower = Decimal(0), Decimal(0)
    for up_to, unit_amount in tiers:
        top = quantity if up_to is None else min(quantity, up_to)
        if top > lower:
            total += (top - lower) * unit_amount
        if up_to is None or quantity <= up_to:
            break
        lower = up_to
    return total


@dataclass
class Usage:
    total: Decimal = Decimal(0)
    events: int = 0
    lowest: Decimal | None = None
    ids: set[str] = field(default_factory=set)

    def add(self, event_id: str, value: str) -> None:
        assert event_id not in self.ids
        self.ids.add(event_id)
        v = Decimal(value) if value else Decimal(1)
        self.total += v
        self.events += 1
        self.lowest = v if self.lowest is None else min(self.lowest, v)


def read_events(path: Path) -> dict[tuple[str, str], Usage]:
    usage: dict[tuple[str, str], Usage] = defaultdict(Usage)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            usage[(row["customer"], row["meter"])].add(row["event_id"], row["value"])
    return usage


#: A due item as expected: (billing date, timing, period start, subtotal, credits).
Item = tuple[datetime, str, datetime, Decimal, Decimal]
#: A document as expected: (billing date, timing or "" when it mixes, subtotal, credits, total, its items as
#: (timing, period start, subtotal, credits), sorted).
Document = tuple[datetime, str, Decimal, Decimal, Decimal, tuple[tuple[str, datetime, Decimal, Decimal], ...]]


def expected_items(
    spec: demo.CustomerSpec, usage: dict[tuple[str, str], Usage], last: datetime, this: datetime
) -> list[Item]:
    """Every item due for the customer: last month's usage in arrears (due at its end) and, for plans
    with a fee in advance, last month's fee (due at its start) and this month's (due now)."""

    def used(meter: str) -> Usage:
        return usage.get((spec.external_id, meter), Usage())

    def arrears(subtotal: Decimal, credits: Decimal = Decimal(0)) -> Item:
        return (this, "in_arrears", last, subtotal, credits)

    def advance(fee: Decimal) -> list[Item]:
        return [(start, "in_advance", start, fee, Decimal(0)) for start in (last, this)]

    if spec.plan == "developer":
        calls = cents(graduated(used("api_calls").total, demo.CALL_TIERS))
        tokens = cents(used("tokens").total * demo.TOKEN_PRICE)
        return [arrears(calls + tokens)]
    if spec.plan == "team":
        return advance(demo.TEAM_FEE)
    if spec.plan == "studio":
        points = (used("images").events * demo.CREDITS_PER_IMAGE).quantize(Decimal(1), rounding=ROUND_CEILING)
        wallet = (spec.top_up_usd or Decimal(0)) * demo.CREDITS_PER_USD
        paid = min(points, wallet)
        return [arrears(cents(points * demo.CREDIT_VALUE), cents(paid * demo.CREDIT_VALUE))]
    if spec.plan == "ads":
        packages = (used("impressions").total / demo.IMPRESSIONS_PACKAGE).to_integral_value(rounding=ROUND_CEILING)
        return [arrears(packages * demo.CPM)]
    assert spec.plan == "support"
    lowest = used("availability").lowest
    credit_percent = Decimal(0)
    for threshold, percent in demo.SLA_TIERS:  # the worst tier missed applies
        if lowest is not None and lowest < threshold:
            credit_percent = percent
    sla = -cents(demo.SUPPORT_FEE * credit_percent / 100)
    return [*advance(demo.SUPPORT_FEE), arrears(used("tickets_resolved").events * demo.PER_TICKET + sla)]


def expected_documents(items: list[Item]) -> list[Document]:
    """One document per billing date (the customer has one currency), holding that date's items."""
    by_date: dict[datetime, list[Item]] = defaultdict(list)
    for item in items:
        by_date[item[0]].append(item)
    out: list[Document] = []
    for due, its in sorted(by_date.items()):
        timings = {i[1] for i in its}
        subtotal, credits = sum(i[3] for i in its), sum(i[4] for i in its)
        parts = tuple(sorted((i[1], i[2], i[3], i[4]) for i in its))
        out.append((due, timings.pop() if len(timings) == 1 else "", subtotal, credits, subtotal - credits, parts))
    return out


def stored_document(inv: Invoice) -> Document:
    """A stored document in the shape of `expected_documents`; its items from the lines' lineage (the due
    item each line bills or pays, with its service period) and the timing each item key names."""
    period: dict[str, datetime] = {}
    billed: dict[str, Decimal] = defaultdict(Decimal)
    paid: dict[str, Decimal] = defaultdict(Decimal)
    for ln in inv.lines:
        if ln.kind == "tax":
            continue
        key = str(ln.lineage["item"])
        period.setdefault(key, ln.period_start)
        if ln.kind in ("credit", "points"):
            paid[key] -= inv.money(ln.amount)
        else:
            billed[key] += inv.money(ln.amount)
    parts = tuple(sorted((k.split(":")[2], period[k], billed[k], paid[k]) for k in period))
    money = inv.money
    return (inv.due_at, inv.timing or "", money(inv.subtotal), money(inv.credits_applied), money(inv.total), parts)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One demo run through the CLI, shared by the checks below: (its directory, what it printed)."""
    directory = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(main, ["demo", "--dir", str(directory), "--customers", str(N), "--seed", str(SEED)])
    assert result.exit_code == 0, result.output
    return directory, result.output


def test_demo_invoices_match_an_independent_computation(demo_run: tuple[Path, str]) -> None:
    directory, _ = demo_run
    specs = demo.customer_specs(N, SEED)
    # The seed gives every case a check below depends on.
    assert {s.plan for s in specs} == set(demo.PLANS)
    studio = [s for s in specs if s.plan == "studio"]
    assert any(s.top_up_usd for s in studio) and any(s.top_up_usd is None for s in studio)

    summary = json.loads((directory / "summary.json").read_text())
    last = datetime.strptime(summary["month"] + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
    this = demo.month_bounds(last + timedelta(days=45))[1]
    usage = read_events(directory / "events.csv")
    assert sum(u.events for u in usage.values()) == summary["events"]

    engine = make_engine(f"sqlite:///{directory / 'tally.db'}")
    try:
        tenant_id = get_tenant(engine, demo.TENANT).id
        subscribed = {
            s.customer_external_id: get_plan_version_by_id(engine, tenant_id, s.plan_version_id).code
            for s in list_subscriptions(engine, tenant_id)
        }
        assert subscribed == {**{s.external_id: s.plan for s in specs}, **dict.fromkeys(demo.VIEWERS, "viewer")}
        every = []
        per_plan: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 4)
        breaches = mixed = 0
        for spec in specs:
            stored = list_invoices(engine, tenant_id, customer=spec.external_id, limit=100)
            every.extend(stored)
            got = sorted(stored_document(i) for i in stored)
            want = expected_documents(expected_items(spec, usage, last, this))
            assert got == want, spec
            mixed += sum(1 for d in want if d[1] == "")
            for _, _, subtotal, credits, total, _ in want:
                sums = per_plan[spec.plan]
                sums[0] += 1
                sums[1] += subtotal
                sums[2] += credits
                sums[3] += total
            breaches += any(ln.kind == "sla_credit" and ln.amount < 0 for i in stored for ln in i.lines)
        assert breaches > 0  # an SLA credit was actually computed, not only "objective met"
        assert mixed > 0  # a document with last month's usage and this month's fee (support)
    finally:
        engine.dispose()

    # Every invoice finalized (paid at once when credits paid it all), numbered without gaps, and the printed
    # summary adds up to the same totals.
    assert all(i.status == ("finalized" if i.total else "paid") for i in every)
    assert sorted(i.number or 0 for i in every) == list(range(1, len(every) + 1))
    for code, sums in per_plan.items():
        reported = summary["plans"][code]
        assert [Decimal(reported[k]) for k in ("invoices", "subtotal", "credits", "total")] == sums, code
    assert sum(p["invoices"] for p in summary["plans"].values()) == len(every)
    assert sum(Decimal(p["credits"]) for p in summary["plans"].values()) > 0

    # Each invoice exported three ways; the JSON says the same total as the database.
    files = sorted((directory / "invoices").iterdir())
    assert len(files) == 3 * len(every)
    by_label = {f"INV-{i.number:06d}": i for i in every}
    for label, invoice in by_label.items():
        pdf = directory / "invoices" / f"{label}.pdf"
        assert pdf.read_bytes().startswith(b"%PDF")
        doc = json.loads((directory / "invoices" / f"{label}.json").read_text())
        assert Decimal(doc["total"]) == invoice.money(invoice.total)
        rows = list(csv.DictReader((directory / "invoices" / f"{label}.csv").open(newline="")))  # one per line
        assert len(rows) == len(invoice.lines) and {r["label"] for r in rows} == {label}
        assert {Decimal(r["total"]) for r in rows} == {invoice.money(invoice.total)}
        assert sum(Decimal(r["amount"]) for r in rows) == invoice.money(invoice.total)


def test_demo_viewers_earn_the_rule_applied_to_their_ad_views(demo_run: tuple[Path, str]) -> None:
    """Each viewer's credits, recomputed from events.csv: min(cap, floor(views x rate)) for the one month."""
    from invoicing.ledger import Ledger

    directory, output = demo_run
    usage = read_events(directory / "events.csv")
    engine = make_engine(f"sqlite:///{directory / 'tally.db'}")
    try:
        ledger = Ledger(engine, get_tenant(engine, demo.TENANT).id)
        got = {v: {t.unit: t.balance for t in ledger.customer_totals(v)} for v in demo.VIEWERS}
    finally:
        engine.dispose()
    want = {
        v: {demo.POINTS_UNIT: int(min(demo.VIEW_CREDITS_CAP, usage[(v, "ad_views")].total * demo.CREDITS_PER_VIEW))}
        for v in demo.VIEWERS
    }
    assert got == want
    assert any(w[demo.POINTS_UNIT] == demo.VIEW_CREDITS_CAP for w in want.values())  # the seed reaches the cap
    assert f"viewers earned {sum(w[demo.POINTS_UNIT] for w in want.values())} credits" in output


def test_demo_prints_the_summary_and_how_to_explore(demo_run: tuple[Path, str]) -> None:
    directory, output = demo_run
    assert "invoices by plan" in output
    for code in demo.PLANS:
        assert code in output
    assert "events/s" in output and "invoice run" in output
    assert f"tally --database-url sqlite:///{directory / 'tally.db'} invoice list demo" in output
    assert str(directory / "invoices") in output


def test_demo_refuses_to_overwrite_an_earlier_run(demo_run: tuple[Path, str]) -> None:
    directory, _ = demo_run
    before = (directory / "tally.db").stat().st_mtime_ns
    result = CliRunner().invoke(main, ["demo", "--dir", str(directory), "--customers", "5"])
    assert result.exit_code == 1
    assert "holds an earlier demo" in result.output and "--force" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (directory / "tally.db").stat().st_mtime_ns == before


def test_customers_and_usage_are_pure_functions_of_the_seed() -> None:
    start, end = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    a = demo.customer_specs(30, 5)
    assert a == demo.customer_specs(30, 5) and a != demo.customer_specs(30, 6)
    events = demo.usage_events(a, start, end, 5)
    assert events == demo.usage_events(a, start, end, 5)
    assert events != demo.usage_events(a, start, end, 6)
    assert len({e.event_id for e in events}) == len(events)
    low, high = int(start.timestamp()) * 10**6, int(end.timestamp()) * 10**6
    assert all(low <= e.timestamp_us < high for e in events)


def test_demo_summary_separates_the_closing_month_from_fees_in_advance(demo_run: tuple[Path, str]) -> None:
    directory, output = demo_run
    summary = json.loads((directory / "summary.json").read_text())
    month = datetime.strptime(summary["month"] + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
    following = demo.month_bounds(month + timedelta(days=45))[1]
    advance = {code: Decimal(p["next_month_in_advance"]) for code, p in summary["plans"].items()}
    for code, p in summary["plans"].items():
        assert Decimal(p["closing_month"]) + advance[code] == Decimal(p["total"]), code
    # Fees in advance are the flat fees of next month (team and support), nothing else.
    team = sum(1 for s in demo.customer_specs(N, SEED) if s.plan == "team")
    assert advance["team"] == team * demo.TEAM_FEE and advance["developer"] == 0
    assert f"{month:%b %Y}" in output and f"{following:%b %Y}" in output and "in advance" in output
    for line in output.splitlines():  # every phase said when it was done
        if line.strip().startswith("done: "):
            assert "(" in line and line.rstrip().endswith(" s)")
    assert sum(line.strip().startswith("done: ") for line in output.splitlines()) >= 6


def test_demo_commands_work_from_any_directory_and_its_events_replay_with_send(
    demo_run: tuple[Path, str], tmp_path: Path
) -> None:
    import os
    import re
    import shlex

    from metering.limits import IngestLimits
    from tally.cli.send import send
    from tally.settings import Settings
    from tests.conftest import ServerThread

    directory, output = demo_run
    listed = next(line for line in output.splitlines() if line.strip().endswith("invoice list demo"))
    args = shlex.split(listed)[1:]
    assert Path(args[1].removeprefix("sqlite:///")).is_absolute()
    runner = CliRunner()
    elsewhere = os.getcwd()
    os.chdir(tmp_path)  # another directory than the demo's
    try:
        result = runner.invoke(main, args)
    finally:
        os.chdir(elsewhere)
    assert result.exit_code == 0 and "INV-000001" in result.stdout, result.output

    key = re.search(r"tally send (\S+) --api-key (tly_\S+)", output)
    assert key is not None and Path(key.group(1)) == (directory / "events.csv").resolve()
    limits = IngestLimits(event_age_max_days=70)  # last month's events, as the printed command sets
    server = ServerThread(Settings(database_url=f"sqlite:///{directory / 'tally.db'}", port=0, ingest=limits))
    try:
        replay = runner.invoke(
            send, [key.group(1), "--api-key", key.group(2), "--target", f"127.0.0.1:{server.running.port}"]
        )
    finally:
        server.stop()
    assert replay.exit_code == 0, replay.output
    summary = json.loads((directory / "summary.json").read_text())
    row = next(line for line in replay.stdout.splitlines() if line.startswith("│") and any(c.isdigit() for c in line))
    accepted, duplicate, rejected, skipped = (cell.strip() for cell in row.split("│")[1:5])
    assert (accepted, duplicate, rejected, skipped) == ("0", f"{summary['events']:,}", "0", "0")  # all stored before
