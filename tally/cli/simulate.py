"""`tally simulate`: what a tenant's customers would have paid over a past window under a candidate plan.

The rules (what "current" means, how a window's edges are cut) are `invoicing.insight._simulation`'s and
docs/insight.md's; this module reads the options, prints the summary and writes the per-customer CSV.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tally.cli._common import BILLING_WORDING, count, fail, open_tenant, parse_instant, print_table

if TYPE_CHECKING:
    from invoicing.insight import CustomerChange, Simulation

#: A stored version, as --plan takes it (the domain checks it again).
VERSION_REF = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}@v?[0-9]{1,9}$")
CSV_COLUMNS = ("customer", "plan", "current", "simulated", "difference", "pct")


def candidate_arg(text: str) -> Any:
    """--plan: a plan file's JSON (parsed here, so a bad file is named) or CODE@VERSION as given."""
    import json

    path = Path(text)
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--plan {text}: cannot read it ({exc})")
        except json.JSONDecodeError as exc:
            fail(f"--plan {text}: not valid JSON ({exc.msg} at line {exc.lineno}); see docs/billing.md for plans")
    if VERSION_REF.match(text):
        return text
    fail(f"--plan {text!r}: no such file, and not a stored version CODE@VERSION (e.g. pro@2)")


def pct_text(change: CustomerChange) -> str:
    return _change(change.pct)


def write_csv(path: Path, sim: Simulation) -> None:
    """Every customer, one row each, amounts as exact decimals (the currency is the simulation's)."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(CSV_COLUMNS)
        for c in sim.customers:
            pct = c.pct
            row = [c.customer, c.plan, f"{c.current:f}", f"{c.simulated:f}", f"{c.difference:f}"]
            out.writerow([*row, "" if pct is None else f"{pct:f}"])


@click.command("simulate")
@click.argument("tenant_name", metavar="TENANT")
@click.option(
    "--plan", "plan_text", required=True, metavar="FILE|CODE@VERSION",
    help="The candidate: a plan file (JSON, as for `tally plan create`) or a stored version such as pro@2.",
)  # fmt: skip
@click.option(
    "--from", "from_text", required=True, metavar="INSTANT", help="Start of the window (ISO 8601 instant, inclusive)."
)
@click.option(
    "--to",
    "to_text",
    required=True,
    metavar="INSTANT",
    help="End of the window (ISO 8601 instant, exclusive; ≤ 366 days).",
)
@click.option(
    "--current-plan", default=None, metavar="CODE",
    help="Only the customers (and time) on this plan [default: every subscribed customer].",
)  # fmt: skip
@click.option(
    "--more-than", "more_than", default="0", show_default=True, metavar="PCT",
    help="List the customers who would pay more than PCT percent extra.",
)  # fmt: skip
@click.option("--top", default=20, show_default=True, type=click.IntRange(0, 10_000), help="Customers listed at most.")
@click.option(
    "--csv", "csv_path", default=None, type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write every customer to this CSV file (customer, plan, current, simulated, difference, pct).",
)  # fmt: skip
@click.pass_context
def simulate(
    ctx: click.Context,
    tenant_name: str,
    plan_text: str,
    from_text: str,
    to_text: str,
    current_plan: str | None,
    more_than: str,
    top: int,
    csv_path: Path | None,
) -> None:
    """Re-price TENANT's stored usage of a past window under a candidate plan.

    For every customer subscribed in the window: the current amount (its current plans re-rated over the
    same usage, exactly as the candidate is, so not the stored invoices), the simulated amount and the
    difference; totals per current plan; the distribution of changes; the customers who would pay more.
    Amounts are the rated charges before tax, discounts and credits.

    \b
    Examples:
      tally simulate acme --plan pro-v2.json \\
            --from 2026-07-01T00:00Z --to 2026-10-01T00:00Z
      tally simulate acme --plan pro@2 --from 2026-07-01T00:00Z \\
            --to 2026-10-01T00:00Z --more-than 10 --csv changes.csv
    """
    from invoicing.insight import simulate_plan
    from metering.errors import InvalidArgument
    from rating.errors import RatingError
    from rating.fixedpoint import parse_decimal

    start = parse_instant(from_text, "--from", wording=BILLING_WORDING)
    end = parse_instant(to_text, "--to", wording=BILLING_WORDING)
    try:
        threshold = parse_decimal(more_than, "--more-than")
    except RatingError as exc:
        raise InvalidArgument(str(exc)) from None
    candidate = candidate_arg(plan_text)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    sim = simulate_plan(engine, tenant_id, candidate, start, end, plan_code=current_plan, threshold_pct=threshold)
    if csv_path is not None:
        write_csv(csv_path, sim)
    _summary(tenant_name, sim, top, csv_path)


def _summary(tenant_name: str, sim: Simulation, top: int, csv_path: Path | None) -> None:
    ccy = sim.currency
    span = f"{sim.start:%Y-%m-%d %H:%MZ} → {sim.end:%Y-%m-%d %H:%MZ}"
    click.echo(f"{tenant_name}: {count(len(sim.customers))} customers under {sim.candidate}, {span} ({ccy})")
    rows = [
        [p.plan, count(p.customers), f"{p.current:f}", f"{p.simulated:f}", f"{p.difference:+f}", _change(p.pct)]
        for p in sim.plans
    ]  # fmt: skip
    if len(sim.plans) != 1:
        n = len(sim.customers)
        rows.append(["all", count(n), f"{sim.current:f}", f"{sim.simulated:f}", f"{sim.difference:+f}",
                     _change(sim.pct)])  # fmt: skip
    print_table(
        f"totals per current plan ({ccy})", ["plan", "customers", "current", "simulated", "difference", "change"], rows
    )
    print_table(
        "distribution of changes", ["change", "customers"], [[b.label, count(b.customers)] for b in sim.distribution]
    )
    if sim.threshold_pct is not None:
        shown = sim.more_than[:top]
        title = f"customers who would pay more than {sim.threshold_pct:f}% extra: {count(len(sim.more_than))}"
        print_table(
            title,
            ["customer", "plan", "current", "simulated", "difference", "change"],
            [[c.customer, c.plan, f"{c.current:f}", f"{c.simulated:f}", f"{c.difference:+f}", pct_text(c) or "new"]
             for c in shown],
        )  # fmt: skip
        if len(sim.more_than) > len(shown):
            where = f"all in {csv_path}" if csv_path is not None else "--csv FILE writes them all"
            click.echo(f"... and {count(len(sim.more_than) - len(shown))} more ({where})")
    click.echo("current = the current plans re-rated over the same usage (not the stored invoices);")
    click.echo("amounts are the rated charges, before tax, discounts and credits")
    if csv_path is not None:
        click.echo(f"wrote {count(len(sim.customers))} customers to {csv_path}")


def _change(pct: Decimal | None) -> str:
    return "" if pct is None else f"{pct:+f}%"
