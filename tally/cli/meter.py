"""`tally meter`: create, list, show and rebuild meters."""

from __future__ import annotations

import click

from tally.cli._common import fail, filter_text, open_engine, print_table


@click.group("meter")
def meter() -> None:
    """Create, list and rebuild meters (what events a tenant accepts and how they count)."""


@meter.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("code")
@click.option("--name", default="", help="Display name [default: the code].")
@click.option(
    "--aggregation",
    type=click.Choice(["count", "sum", "max", "min", "latest", "unique_count", "gauge"]),
    default="sum",
    show_default=True,
    help="How events add up: count them, sum/max/min/latest of their values, distinct values, or a gauge.",
)
@click.option("--scale", "value_scale", type=int, default=0, show_default=True, help="Fractional digits of values.")
@click.option("--unit", default="", help="Display unit, e.g. tokens, GB, seats.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Repeatable. Count only events whose property KEY is one of the values.",
)
@click.option("--group-by", "group_by", multiple=True, metavar="KEY", help="Repeatable. A dimension property.")
@click.option(
    "--unique-property", default=None, metavar="KEY", help="unique_count: the property whose distinct values count."
)
@click.option(
    "--time-unit",
    type=click.Choice(["second", "minute", "hour", "day"]),
    default=None,
    help="gauge: the unit of its time integral [default: day, so seats held a day = 1 seat-day].",
)
@click.pass_context
def meter_create(
    ctx: click.Context,
    tenant_name: str,
    code: str,
    name: str,
    aggregation: str,
    value_scale: int,
    unit: str,
    filters: tuple[str, ...],
    group_by: tuple[str, ...],
    unique_property: str | None,
    time_unit: str | None,
) -> None:
    """Create meter CODE for TENANT.

    \b
    Examples:
      tokens by model, paid tiers only, 2 decimals:
        tally meter create acme tokens --scale 2 --group-by model --filter tier=paid,trial
      monthly active users (distinct values of the `user` property):
        tally meter create acme mau --aggregation unique_count --unique-property user
      seats held over time, billed in seat-days (each event sets the seat count):
        tally meter create acme seats --aggregation gauge --time-unit day
    """
    from metering.meter import MeterDefinition, create_meter
    from metering.tenant import get_tenant

    parsed: dict[str, list[str]] = {}
    for item in filters:
        key, sep, values = item.partition("=")
        if not sep or not values:
            fail(f"--filter {item!r}: write KEY=VALUE[,VALUE...]")
        parsed[key] = values.split(",")
    engine = open_engine(ctx)
    t = get_tenant(engine, tenant_name)
    m = create_meter(
        engine,
        t.id,
        MeterDefinition(
            code=code,
            name=name,
            aggregation=aggregation,
            value_scale=value_scale,
            unit=unit,
            filter=parsed,
            group_by=list(group_by),
            unique_property=unique_property,
            time_unit=time_unit,
        ),
    )
    click.echo(f"created meter {m.code} ({m.aggregation.value}, scale {m.value_scale}) for tenant {t.name}")


@meter.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def meter_list(ctx: click.Context, tenant_name: str) -> None:
    """List TENANT's meters."""
    from metering.meter import list_meters
    from metering.tenant import get_tenant

    engine = open_engine(ctx)
    t = get_tenant(engine, tenant_name)
    rows = [
        [m.code, m.name, m.aggregation.value, str(m.value_scale), m.unit, ",".join(m.group_by), filter_text(m.filter)]
        for m in list_meters(engine, t.id)
    ]
    print_table(f"meters of {t.name}", ["code", "name", "aggregation", "scale", "unit", "group by", "filter"], rows)


@meter.command("show")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("code")
@click.pass_context
def meter_show(ctx: click.Context, tenant_name: str, code: str) -> None:
    """Show meter CODE of TENANT: its definition and what its rollups hold."""
    from metering.meter import get_meter
    from metering.tenant import get_tenant
    from metering.usage import meter_summary

    engine = open_engine(ctx)
    t = get_tenant(engine, tenant_name)
    m = get_meter(engine, t.id, code)
    summary = meter_summary(engine, t.id, code)
    how = m.aggregation.value
    if m.unique_property:
        how += f" of property {m.unique_property!r}"
    if m.time_unit:
        how += f", integrated per {m.time_unit.value}"

    def when(moment: object) -> str:
        return moment.isoformat(timespec="seconds") if hasattr(moment, "isoformat") else "-"

    rows = [
        ["code", m.code],
        ["name", m.name],
        ["aggregation", how],
        ["value scale", str(m.value_scale)],
        ["quantity scale", str(m.quantity_scale)],
        ["unit", m.unit or "-"],
        ["group by", ", ".join(m.group_by) or "-"],
        ["filter", filter_text(m.filter) or "-"],
        ["created", when(m.created_at)],
        ["counted events", f"{summary.events:,}"],
        ["customers", f"{summary.customers:,}"],
        ["rollup buckets", f"{summary.buckets:,}"],
        ["first event", when(summary.first)],
        ["last event", when(summary.last)],
        ["meaning", "frozen (has events): create a new code to change it" if summary.events else "editable"],
    ]
    print_table(f"meter {m.code} of {t.name}", ["field", "value"], rows)


@meter.command("rebuild")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("codes", nargs=-1, metavar="[CODE]...")
@click.pass_context
def meter_rebuild(ctx: click.Context, tenant_name: str, codes: tuple[str, ...]) -> None:
    """Recompute rollups from raw events and report whether they matched (all meters by default).

    Exit status 0 when every stored rollup already matched the raw events, 1 when some bucket had to
    be corrected (it is corrected either way). Ingest waits while a meter is rebuilt.
    """
    from metering.meter import get_meter, list_meters
    from metering.rollup import rebuild
    from metering.tenant import get_tenant

    engine = open_engine(ctx)
    t = get_tenant(engine, tenant_name)
    chosen = [get_meter(engine, t.id, c) for c in codes] if codes else list_meters(engine, t.id)
    rows, corrected = [], 0
    for m in chosen:
        report = rebuild(engine, t.id, m.code, m.spec)
        corrected += report.mismatched_before
        verdict = "matched" if report.mismatched_before == 0 else f"{report.mismatched_before} buckets corrected"
        rows.append([m.code, f"{report.events:,}", f"{report.buckets:,}", verdict])
    print_table(f"rollup rebuild for {t.name}", ["meter", "counted events", "buckets", "result"], rows)
    if corrected:
        ctx.exit(1)
