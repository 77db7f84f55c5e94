"""`tally points`: points units, their rates against a currency, and crediting points earned from usage.

    tally points unit define acme pts --scale 0 --name "Reward points"
    tally points rate set acme USD pts 100 --from 2026-11-01T00:00Z     # 100 pts per 1 USD from then on
    tally convert acme cus_42 2.50 USD pts                              # now converts at that rate
    tally points accrue acme                                            # credit what earning rules owe

Rates are exact decimals in plain notation (`2.5`, never `2.5e0`), instants ISO 8601 with an offset;
tenants by name. Every refusal is one line naming what to fix (see docs/ledger.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from tally.cli._common import (
    SignedArguments,
    fail,
    open_ledger,
    open_tenant,
    optional_instant,
    parse_instant,
    print_table,
    utc_minute,
)

if TYPE_CHECKING:
    from invoicing.earning import AccrualRun

ROUNDINGS = ("down", "up", "half_up", "half_even")
#: The CLI's name for each field the ledger names in a refusal, so the message points at what was typed.
FLAGS = {
    "code": "CODE", "scale": "--scale", "name": "--name", "currency": "CURRENCY", "points_unit": "POINTS_UNIT",
    "rate": "RATE", "valid_from": "--from", "valid_to": "--to",
}  # fmt: skip


@contextmanager
def _flags() -> Iterator[None]:
    """Re-word a domain refusal `field: why` as `FLAG: why`."""
    from metering.errors import TallyError

    try:
        yield
    except TallyError as exc:
        field, sep, why = str(exc).partition(": ")
        if not sep or field not in FLAGS:
            raise
        raise type(exc)(f"{FLAGS[field]}: {why}") from None


@click.group("points")
def points() -> None:
    """Points: units, rates against a currency, and points earned from usage."""


# --- units ---------------------------------------------------------------------------------------------------


@points.group("unit")
def unit() -> None:
    """A tenant's points units: define, list."""


@unit.command("define")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("code")
@click.option("--scale", type=click.IntRange(0, 12), required=True, help="Decimal places of an amount (0..12).")
@click.option("--name", default="", help="Display name (default: the code).")
@click.pass_context
def unit_define(ctx: click.Context, tenant_name: str, code: str, scale: int, name: str) -> None:
    """Define points unit CODE (lower case, e.g. pts). Defining it again with the same scale changes nothing.

    \b
    Example:
      tally points unit define acme pts --scale 0 --name "Reward points"
    """
    from invoicing.ledger.unit import get_points_unit
    from metering.errors import NotFound

    led = open_ledger(ctx, tenant_name)
    with led.engine.connect() as conn:
        try:
            get_points_unit(conn, led.tenant_id, code)
            existed = True
        except NotFound:
            existed = False
    with _flags():
        led.define_points_unit(code, scale, name)
    with led.engine.connect() as conn:
        u = get_points_unit(conn, led.tenant_id, code)
    click.echo(f"{'exists' if existed else 'defined'}: points unit {u.code} (scale {u.scale}, {u.name!r})")


@unit.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def unit_list(ctx: click.Context, tenant_name: str) -> None:
    """TENANT's points units by code."""
    led = open_ledger(ctx, tenant_name)
    rows = [[u.code, str(u.scale), u.name] for u in led.points_units()]
    if not rows:
        click.echo(
            f"{tenant_name} has no points units; define one with `tally points unit define {tenant_name} pts --scale 0`"
        )
        return
    print_table(f"{tenant_name} points units", ["code", "scale", "name"], rows, keep=("code",))


# --- rates ---------------------------------------------------------------------------------------------------


@points.group("rate")
def rate() -> None:
    """Rates between a currency and a points unit: set, list."""


@rate.command("set", cls=SignedArguments)
@click.argument("tenant_name", metavar="TENANT")
@click.argument("currency")
@click.argument("points_unit", metavar="POINTS_UNIT")
@click.argument("rate_text", metavar="RATE")
@click.option("--from", "valid_from", required=True, help="ISO 8601 instant the rate starts to apply (inclusive).")
@click.option("--to", "valid_to", default=None, help="ISO 8601 instant it stops applying (exclusive); default: never.")
@click.option(
    "--rounding", type=click.Choice(ROUNDINGS), default="down", show_default=True,
    help="How a requested amount is brought to one that converts exactly (down never takes more than asked).",
)  # fmt: skip
@click.pass_context
def rate_set(
    ctx: click.Context, tenant_name: str, currency: str, points_unit: str, rate_text: str, valid_from: str,
    valid_to: str | None, rounding: str,
) -> None:  # fmt: skip
    """RATE points of POINTS_UNIT for one whole CURRENCY unit, from --from until --to.

    \b
    Example (100 pts per dollar from November on):
      tally points rate set acme USD pts 100 --from 2026-11-01T00:00Z
    """
    from rating.rounding import RoundingMode

    start = parse_instant(valid_from, "--from")
    end = optional_instant(valid_to, "--to")
    led = open_ledger(ctx, tenant_name)
    with _flags():
        r = led.set_rate(currency, points_unit, rate_text, start, end, RoundingMode(rounding))
    until = "on" if r.valid_to_us is None else f"until {utc_minute(_at(r.valid_to_us))}"
    click.echo(
        f"set: {r.rate:f} {r.points_unit} per 1 {r.currency} from {utc_minute(_at(r.valid_from_us))} {until} "
        f"(rounding {r.rounding.value})"
    )


def _at(us: int) -> datetime:
    from invoicing.ledger.unit import from_us

    return from_us(us)


@rate.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--currency", default=None, help="Only the rates of this currency.")
@click.option("--unit", "points_unit", default=None, help="Only the rates of this points unit.")
@click.pass_context
def rate_list(ctx: click.Context, tenant_name: str, currency: str | None, points_unit: str | None) -> None:
    """TENANT's rates by currency, points unit and start."""
    led = open_ledger(ctx, tenant_name)
    rows = [
        [r.currency, r.points_unit, f"{r.rate:f}", r.rounding.value, utc_minute(_at(r.valid_from_us)),
         "" if r.valid_to_us is None else utc_minute(_at(r.valid_to_us))]
        for r in led.rates(currency, points_unit)
    ]  # fmt: skip
    if not rows:
        click.echo(
            f"{tenant_name} has no rates; set one with `tally points rate set {tenant_name} USD pts 100 --from ...`"
        )
        return
    print_table(
        f"{tenant_name} rates (points per 1 currency unit)", ["currency", "unit", "rate", "rounding", "from", "until"],
        rows, keep=("currency", "unit", "rounding"),
    )  # fmt: skip


# --- earning -------------------------------------------------------------------------------------------------


@points.command("accrue")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--as-of", default=None, help="ISO 8601: count usage up to this instant [default: now].")
@click.option(
    "--since", default=None,
    help="ISO 8601: only billing periods that end after this instant [default: every period].",
)  # fmt: skip
@click.pass_context
def accrue(ctx: click.Context, tenant_name: str, as_of: str | None, since: str | None) -> None:
    """Credit the points TENANT's plans' earning rules owe: per subscription and billing period, what its usage
    earns (capped) minus what was credited before. Running it again credits only what usage added since.

    \b
    Example:
      tally points accrue acme --as-of 2026-12-01T00:00Z
    """
    from invoicing.earning import accrue_points

    moment = datetime.now(UTC) if as_of is None else parse_instant(as_of, "--as-of")
    floor = optional_instant(since, "--since")
    if floor is not None and floor >= moment:
        fail(f"--since {since} must be before --as-of ({moment.isoformat()})")
    engine, tenant_id = open_tenant(ctx, tenant_name)
    run = accrue_points(engine, tenant_id, moment, since=floor)
    _report(ctx, tenant_name, run)


def _report(ctx: click.Context, tenant_name: str, run: AccrualRun) -> None:
    from tally.cli._common import err_console

    led = open_ledger(ctx, tenant_name)
    scales = {code: led.unit(code).scale for code in {c.unit for c in run.credits}}

    def text(steps: int, code: str) -> str:
        from rating.fixedpoint import from_scaled

        return f"{from_scaled(steps, scales[code]):f} {code}"

    if run.credits:
        rows = [
            [c.customer, c.rule, f"{c.period_start:%Y-%m-%d}", f"{c.quantity:f}", text(c.points, c.unit),
             text(c.earned, c.unit) + (" (cap)" if c.capped else "")]
            for c in run.credits
        ]  # fmt: skip
        print_table(
            f"points credited (usage up to {utc_minute(run.through)})",
            ["customer", "rule", "period", "usage", "credited", "period total"], rows, keep=("rule", "period"),
        )  # fmt: skip
    done = f"{run.checked} rule-period(s) checked, usage up to {utc_minute(run.through)}"
    if not run.credits:
        click.echo(f"nothing new to credit; {done}")
    else:
        totals = ", ".join(text(n, u) for u, n in sorted(run.totals().items()))
        customers = len({c.customer for c in run.credits})
        click.echo(f"credited {totals} to {customers} customer(s) in {len(run.credits)} transfer(s); {done}")
    for problem in run.problems:
        err_console.print(f"warning: {problem}", markup=False, highlight=False)


__all__ = ["points"]
