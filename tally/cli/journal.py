"""`tally journal`: export the ledger's posted movements for accounting."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from tally.cli._common import instant_or_now, open_tenant


@click.group()
def journal() -> None:
    """Export the ledger's posted movements for accounting (double entry, exact decimals)."""


@journal.command("export")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--from", "from_text", default=None, help="Start instant, inclusive [default: the beginning].")
@click.option("--to", "to_text", default=None, help="End instant, exclusive [default: now].")
@click.option("--summary", is_flag=True, help="One row per account plus a total per unit, instead of every leg.")
@click.option(
    "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
    help="Write the CSV to this file instead of stdout.",
)  # fmt: skip
@click.pass_context
def journal_export(
    ctx: click.Context, tenant_name: str, from_text: str | None, to_text: str | None, summary: bool,
    output: Path | None,
) -> None:  # fmt: skip
    """CSV of TENANT's ledger debits and credits dated in [--from, --to): one row per transfer leg
    (date, transfer, account, kind, customer, unit, debit, credit, code, reference); per unit the
    debits equal the credits.

    \b
    Example:
      tally journal export acme --from 2026-01-01T00:00Z --to 2026-02-01T00:00Z --output jan.csv
      tally journal export acme --from 2026-01-01T00:00Z --to 2026-02-01T00:00Z --summary
    """
    from invoicing.ledger.journal import export_journal

    engine, tenant_id = open_tenant(ctx, tenant_name)
    start = datetime(1970, 1, 1, tzinfo=UTC) if from_text is None else instant_or_now(from_text, "--from")
    end = instant_or_now(to_text, "--to")
    text = export_journal(engine, tenant_id, start, end, summary=summary)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text)
    click.echo(f"wrote {output} ({max(text.count(chr(10)) - 1, 0)} rows)")
