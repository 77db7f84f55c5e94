"""`tally profile`: the tenant's billing profile, the seller its invoices name (show, set).

`set` changes only the options given, so `--terms-days 0` (due on receipt) or `--no-issue-zero-total`
are changes like any other; `--clear-logo` and `--clear-address` remove what `--logo`/`--address` set.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from tally.cli._common import fail, open_tenant, print_table, utc_minute


@click.group()
def profile() -> None:
    """Show and set the seller on a tenant's invoices: legal name, address, tax id, payment terms, logo."""


@profile.command("show")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def profile_show(ctx: click.Context, tenant_name: str) -> None:
    """Show TENANT's billing profile (the defaults if it was never set).

    \b
    Example:
      tally profile show acme
    """
    from invoicing.catalog import get_billing_profile

    engine, tenant_id = open_tenant(ctx, tenant_name)
    p = get_billing_profile(engine, tenant_id)
    address = "" if p.address is None else ", ".join(v for v in p.address.model_dump().values() if v)
    logo = f"{p.logo_type.upper()}, {len(p.logo):,} bytes" if p.logo and p.logo_type else "none"
    fields = [
        ["legal name", p.legal_name or f"(not set: invoices show the tenant name {tenant_name!r})"],
        ["address", address], ["tax id", p.tax_id],
        ["payment terms", f"{p.terms} ({p.payment_terms_days} days)"],
        ["payment instructions", p.payment_instructions], ["logo", logo],
        ["zero-total documents", "issued" if p.issue_zero_total else "not issued"],
        ["grouping", "one document per customer, billing date and currency" if p.invoice_grouping == "customer"
         else "one document per subscription"],
        ["updated", utc_minute(p.updated_at) if p.updated_at else "never (defaults)"],
    ]  # fmt: skip
    print_table(f"billing profile of {tenant_name}", ["field", "value"], fields)


def _read_logo(path: Path) -> bytes:
    from invoicing.catalog import LOGO_MAX_BYTES

    size = path.stat().st_size
    if size > LOGO_MAX_BYTES:  # checked again by the domain; this one avoids reading a huge file
        raise click.ClickException(
            f"--logo {path} is {size:,} bytes; at most {LOGO_MAX_BYTES:,} (256 KiB): scale it down or compress it"
        )
    return path.read_bytes()


@profile.command("set")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--legal-name", default=None, help="The seller's legal name printed on invoices.")
@click.option(
    "--address", default=None, help='Address as JSON: {"line1":..,"city":..,"postal_code":..,"country":"FR"}.'
)
@click.option("--clear-address", is_flag=True, help="Remove the address.")
@click.option("--tax-id", default=None, help="The seller's tax id (VAT number, EIN, ...).")
@click.option("--instructions", default=None, help="How to pay (bank account, reference), printed on invoices.")
@click.option("--terms-days", type=int, default=None, help="Days from issue to due date, 0 (on receipt) to 365.")
@click.option(
    "--logo", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="PNG or JPEG file."
)
@click.option("--clear-logo", is_flag=True, help="Remove the logo.")
@click.option("--issue-zero-total/--no-issue-zero-total", default=None, help="Issue documents whose total is zero.")
@click.option(
    "--grouping", type=click.Choice(["customer", "subscription"]), default=None,
    help="One document per customer (billing date, currency) or per subscription.",
)  # fmt: skip
@click.pass_context
def profile_set(
    ctx: click.Context,
    tenant_name: str,
    legal_name: str | None,
    address: str | None,
    clear_address: bool,
    tax_id: str | None,
    instructions: str | None,
    terms_days: int | None,
    logo: Path | None,
    clear_logo: bool,
    issue_zero_total: bool | None,
    grouping: str | None,
) -> None:
    """Change TENANT's billing profile; options not given stay as they are.

    \b
    Example:
      tally profile set acme --legal-name "Acme Metering SAS" --tax-id FR40123456789 \\
          --address '{"line1":"3 avenue de l'"'"'Opéra","postal_code":"75001","city":"Paris","country":"FR"}' \\
          --terms-days 30 --instructions "IBAN FR76 3000 6000 0112 3456 7890 189" --logo logo.png
    """
    from invoicing.catalog import Address, set_billing_profile

    if address is not None and clear_address:
        fail("--address and --clear-address contradict each other: give one")
    if logo is not None and clear_logo:
        fail("--logo and --clear-logo contradict each other: give one")
    changes: dict[str, Any] = {}
    if legal_name is not None:
        changes["legal_name"] = legal_name
    if address is not None:
        try:
            changes["address"] = Address.model_validate(json.loads(address))
        except json.JSONDecodeError as exc:
            raise click.ClickException(f'--address is not JSON ({exc.msg}); e.g. \'{{"city":"Paris"}}\'') from None
    if clear_address:
        changes["address"] = None
    if tax_id is not None:
        changes["tax_id"] = tax_id
    if instructions is not None:
        changes["payment_instructions"] = instructions
    if terms_days is not None:
        changes["payment_terms_days"] = terms_days
    if logo is not None:
        changes["logo"] = _read_logo(logo)
    if clear_logo:
        changes["logo"] = None
    if issue_zero_total is not None:
        changes["issue_zero_total"] = issue_zero_total
    if grouping is not None:
        changes["invoice_grouping"] = grouping
    if not changes:
        fail("nothing to change: give at least one option (see tally profile set --help)")
    engine, tenant_id = open_tenant(ctx, tenant_name)
    p = set_billing_profile(engine, tenant_id, changes, datetime.now(UTC))
    click.echo(f"billing profile of {tenant_name} updated ({', '.join(sorted(changes))}); "
               f"terms {p.terms}; see it with: tally profile show {tenant_name}")  # fmt: skip


__all__ = ["profile"]
