"""`tally usage`: exact usage of a meter by a customer over a time range, from rollups."""

from __future__ import annotations

import click

from tally.cli._common import filter_text, open_engine, parse_instant, print_table


@click.command("usage")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.argument("meter_code", metavar="METER")
@click.option("--from", "start", required=True, help="Start, ISO 8601 (inclusive), e.g. 2026-11-01T00:00:00+01:00.")
@click.option("--to", "end", required=True, help="End, ISO 8601 (exclusive). Both on 15-minute boundaries.")
@click.option("--window", type=click.Choice(["hour", "day", "month"]), default=None, help="Split by calendar window.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone for windows, e.g. Europe/Paris.")
@click.option("--group-by", "group_by", is_flag=True, help="Split by the meter's dimensions.")
@click.pass_context
def usage_command(
    ctx: click.Context,
    tenant_name: str,
    customer: str,
    meter_code: str,
    start: str,
    end: str,
    window: str | None,
    tz: str,
    group_by: bool,
) -> None:
    """Exact usage of METER by CUSTOMER over [--from, --to), from rollups."""
    from metering.tenant import get_tenant
    from metering.usage import Window, usage

    engine = open_engine(ctx)
    t = get_tenant(engine, tenant_name)
    rows = usage(
        engine,
        t.id,
        customer,
        meter_code,
        parse_instant(start, "--from"),
        parse_instant(end, "--to"),
        group_by=group_by,
        window=Window(window) if window else None,
        tz=tz,
    )
    table_rows = [
        [
            r.window_start.isoformat() if r.window_start else "",
            filter_text({k: [v] for k, v in r.group.items()}),
            str(r.quantity),
            f"{r.events:,}",
        ]
        for r in rows
    ]
    print_table(f"{meter_code} used by {customer}", ["window", "dimensions", "quantity", "events"], table_rows)
