"""`tally rate`: quote one price for one quantity from the command line, exactly.

Every failure a user can cause (unreadable file, bad JSON, invalid price, bad quantity) becomes one
line on stderr and exit status 2, saying what to fix; a traceback would only hide the message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import rating
from rating.errors import InvalidPriceError, RatingError
from rating.rounding import RoundingMode

if TYPE_CHECKING:  # rich and the rating results load numpy and more: imported when a quote is printed
    from rich.table import Table

    from rating.result import Quote

SCHEMA_HINT = "see docs/price.schema.json"


class RateError(click.ClickException):
    """A user-fixable problem: printed as one `Error: ...` line, exit status 2 like a usage error."""

    exit_code = 2


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RateError(f"cannot read {what} file {str(path)!r}: {exc.strerror or exc}; check the path") from None
    try:
        return json.loads(text, parse_float=_keep_float_text)
    except json.JSONDecodeError as exc:
        raise RateError(
            f"{what} file {str(path)!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


class _FloatText(float):
    """A JSON float kept as float so the price validator can refuse it by name (never used as money)."""


def _keep_float_text(text: str) -> float:
    return _FloatText(text)


def _read_events(path: Path) -> list[str]:
    """Events file: a JSON array of decimal strings/ints, or one decimal per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RateError(f"cannot read events file {str(path)!r}: {exc.strerror or exc}; check the path") from None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped, parse_float=str)
        except json.JSONDecodeError as exc:
            raise RateError(f"events file {str(path)!r} is not valid JSON ({exc.msg})") from None
        if not isinstance(data, list):
            raise RateError(f"events file {str(path)!r} must hold a JSON array of amounts")
        return [str(x) for x in data]
    return [line.strip() for line in stripped.splitlines() if line.strip()]


def _table(quote: Quote, mode: RoundingMode) -> Table:
    from rich.table import Table

    table = Table(title=f"{quote.model} — quantity {quote.quantity}", show_lines=False)
    for name in ("line", "from (excl.)", "up to (incl.)", "units", "unit amount", "flat", "amount"):
        table.add_column(name, justify="left" if name == "line" else "right")
    for ln in quote.lines:
        table.add_row(
            ln.label,
            "" if ln.lower is None else str(ln.lower),
            "∞" if ln.upper is None and ln.tier is not None else ("" if ln.upper is None else str(ln.upper)),
            str(ln.units),
            str(ln.unit_amount),
            str(ln.flat_amount),
            str(ln.amount),
        )
    table.add_section()
    table.add_row("total (exact)", "", "", "", "", "", f"{quote.amount} {quote.unit.code}")
    table.add_row(f"total ({mode.value})", "", "", "", "", "", f"{quote.rounded(mode).amount} {quote.unit.code}")
    return table


@click.command("rate")
@click.option("--price", "price_file", required=True, type=click.Path(path_type=Path), help="price definition (JSON)")
@click.option("--quantity", required=True, help="decimal quantity, e.g. 1500 or 10.5")
@click.option(
    "--events",
    "events_file",
    type=click.Path(path_type=Path),
    default=None,
    help="per-event amounts (JSON array or one per line); must sum to --quantity",
)
@click.option("--dimension", default=None, help="dimension value for a dimensional price, e.g. eu")
@click.option(
    "--rounding",
    type=click.Choice([m.value for m in RoundingMode]),
    default=RoundingMode.HALF_EVEN.value,
    show_default=True,
    help="how the exact amount is rounded once to the currency's minor unit",
)
@click.option("--json", "as_json", is_flag=True, help="print the quote as one JSON object")
def rate(
    price_file: Path, quantity: str, events_file: Path | None, dimension: str | None, rounding: str, as_json: bool
) -> None:
    """Print the exact quote of PRICE for QUANTITY, broken down by tier."""
    definition = _read_json(price_file, "price")
    events = _read_events(events_file) if events_file is not None else None
    mode = RoundingMode(rounding)
    try:
        quote = rating.quote(definition, quantity, events, dimension=dimension)
    except InvalidPriceError as exc:
        raise RateError(f"invalid price in {str(price_file)!r}: {exc} ({SCHEMA_HINT})") from None
    except RatingError as exc:
        raise RateError(f"cannot rate: {exc}") from None
    if as_json:
        click.echo(json.dumps(quote.to_json(mode), indent=2))
        return
    from rich.console import Console

    console = Console(file=sys.stdout, highlight=False, width=max(100, Console().width))
    console.print(_table(quote, mode))
    if quote.event_amounts is not None:
        console.print("per-event amounts: " + ", ".join(str(a) for a in quote.event_amounts))
    if quote.money_equivalent is not None:
        console.print(f"money equivalent: {quote.money_equivalent}")


__all__ = ["rate"]
