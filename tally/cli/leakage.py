"""`tally leakage`: counted usage of a window that no invoice will bill (rules: `invoicing.insight._leakage`)."""

from __future__ import annotations

import click

from tally.cli._common import BILLING_WORDING, count, open_tenant, parse_instant, print_table

#: What each category means, as the summary prints it.
MEANING = {
    "unknown_customer": "no customer has this id",
    "unpriced_meter": "no published plan prices the meter",
    "no_subscription": "no subscription at the event's time",
    "not_in_plan": "the plan in force does not price the meter",
}


@click.command("leakage")
@click.argument("tenant_name", metavar="TENANT")
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
@click.option("--top", default=20, show_default=True, type=click.IntRange(0, 10_000), help="Rows listed at most.")
@click.pass_context
def leakage(ctx: click.Context, tenant_name: str, from_text: str, to_text: str, top: int) -> None:
    """Find TENANT's usage that will never be billed: events from customers that do not exist, from
    customers with no subscription covering the meter at the event's time, and on meters no plan prices.

    Ingest accepts such events (usage may arrive before its customer or subscription); this report says
    what is still outside every bill. Usage in a trial or a pause is free by the plan's terms and not listed.

    \b
    Example:
      tally leakage acme --from 2026-11-01T00:00Z --to 2026-12-01T00:00Z
    """
    from invoicing.insight import leakage_report

    start = parse_instant(from_text, "--from", wording=BILLING_WORDING)
    end = parse_instant(to_text, "--to", wording=BILLING_WORDING)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    report = leakage_report(engine, tenant_id, start, end)
    span = f"{report.start:%Y-%m-%d %H:%MZ} → {report.end:%Y-%m-%d %H:%MZ}"
    click.echo(
        f"{tenant_name}: {count(report.events)} of {count(report.counted_events)} counted events unbilled, {span}"
    )
    print_table(
        "unbilled usage by category",
        ["category", "why", "events", "customers", "meters"],
        [[c.category, MEANING[c.category], count(c.events), count(c.customers), ", ".join(c.meters)]
         for c in report.categories],
    )  # fmt: skip
    if report.rows:
        shown = report.rows[:top]
        print_table(
            f"unbilled usage per customer and meter: {count(len(report.rows))}",
            ["category", "customer", "meter", "events", "quantity"],
            [[r.category, r.customer, r.meter, count(r.events), "" if r.quantity is None else f"{r.quantity:f}"]
             for r in shown],
        )  # fmt: skip
        if len(report.rows) > len(shown):
            click.echo(f"... and {count(len(report.rows) - len(shown))} more (--top N lists more)")
