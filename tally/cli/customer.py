"""`tally customer`: create, update, list and show (the customer 360) the customers a tenant bills."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from tally.cli._common import (
    fail,
    instant_or_now,
    money,
    open_tenant,
    print_table,
    subscription_table,
    utc_minute,
)


@click.group()
def customer() -> None:
    """Create, update, list and show the customers a tenant bills."""


GROUPING_HELP = (
    "One document per billing date and currency (customer) or per subscription; default: the tenant's "
    "billing profile (tally profile show)."
)


def _metadata(meta: tuple[str, ...]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.ClickException(f"--meta {item!r} must be KEY=VALUE, e.g. --meta crm=991")
        metadata[key] = value
    return metadata


def _address(address: str) -> Any:
    from invoicing.catalog import Address

    try:
        return Address.model_validate(json.loads(address))
    except json.JSONDecodeError as exc:
        raise click.ClickException(f'--address is not JSON ({exc.msg}); e.g. \'{{"city":"Paris"}}\'') from None


@customer.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("external_id")
@click.option("--name", default="", help="Display name [default: the external id].")
@click.option("--currency", default="USD", show_default=True, help="ISO 4217 code invoices are issued in.")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="IANA zone periods turn over in.")
@click.option("--email", default="", help="Billing e-mail address.")
@click.option("--tax-region", default="", help="Tax region code, e.g. FR or US-CA.")
@click.option(
    "--address", default=None, help='Address as JSON: {"line1":..,"city":..,"postal_code":..,"country":"FR"}.'
)
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata entry (repeatable).")
@click.option("--tax-id", default="", help="The customer's tax id (VAT number, EIN, ...) printed on invoices.")
@click.option("--invoice-grouping", type=click.Choice(["customer", "subscription"]), default=None, help=GROUPING_HELP)
@click.pass_context
def customer_create(
    ctx: click.Context,
    tenant_name: str,
    external_id: str,
    name: str,
    currency: str,
    tz: str,
    email: str,
    tax_region: str,
    address: str | None,
    meta: tuple[str, ...],
    tax_id: str,
    invoice_grouping: str | None,
) -> None:
    """Create customer EXTERNAL_ID (your own id for them; events name it) for TENANT.

    \b
    Example:
      tally customer create acme cus_42 --name "Ada Ltd" --currency EUR \\
          --timezone Europe/Paris --email billing@ada.example --meta crm=991 --tax-id FR98765432101
    """
    from invoicing.catalog import CustomerDefinition, create_customer

    metadata = _metadata(meta)
    parsed_address = None if address is None else _address(address)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    definition = CustomerDefinition(
        external_id=external_id,
        name=name,
        currency=currency,
        timezone=tz,
        email=email,
        tax_region=tax_region,
        address=parsed_address,
        metadata=metadata,
        tax_id=tax_id,
        invoice_grouping=invoice_grouping,
    )
    c = create_customer(engine, tenant_id, definition, datetime.now(UTC))
    click.echo(f"created customer {c.external_id} ({c.currency}, {c.timezone}); next: tally subscription create "
               f"{tenant_name} {c.external_id} PLAN")  # fmt: skip


@customer.command("update")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("external_id")
@click.option("--name", default=None, help="Display name.")
@click.option("--currency", default=None, help="ISO 4217 code (only before the first subscription).")
@click.option("--timezone", "tz", default=None, help="IANA zone (only before the first subscription).")
@click.option("--email", default=None, help='Billing e-mail address ("" clears it).')
@click.option("--tax-region", default=None, help="Tax region code, e.g. FR or US-CA.")
@click.option("--address", default=None, help="Address as JSON; '{}' clears it.")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Replace the metadata with these entries.")
@click.option("--tax-id", default=None, help='The customer\'s tax id printed on invoices ("" clears it).')
@click.option(
    "--invoice-grouping", type=click.Choice(["customer", "subscription", "tenant"]), default=None,
    help="customer, subscription, or tenant to follow the tenant's billing profile again.",
)  # fmt: skip
@click.pass_context
def customer_update(
    ctx: click.Context,
    tenant_name: str,
    external_id: str,
    name: str | None,
    currency: str | None,
    tz: str | None,
    email: str | None,
    tax_region: str | None,
    address: str | None,
    meta: tuple[str, ...],
    tax_id: str | None,
    invoice_grouping: str | None,
) -> None:
    """Change customer EXTERNAL_ID of TENANT; options not given stay as they are.

    \b
    Example:
      tally customer update acme cus_42 --tax-id FR98765432101 --invoice-grouping subscription
    """
    from invoicing.catalog import CustomerUpdate, update_customer

    values: dict[str, Any] = {
        "name": name, "currency": currency, "timezone": tz, "email": email, "tax_region": tax_region,
        "tax_id": tax_id, "metadata": _metadata(meta) if meta else None,
        "address": None if address is None else _address(address),
        "invoice_grouping": "" if invoice_grouping == "tenant" else invoice_grouping,
    }  # fmt: skip
    change = CustomerUpdate(**{k: v for k, v in values.items() if v is not None})
    if not change.model_fields_set:
        fail("nothing to change: give at least one option (see tally customer update --help)")
    engine, tenant_id = open_tenant(ctx, tenant_name)
    c = update_customer(engine, tenant_id, external_id, change, datetime.now(UTC))
    click.echo(f"updated customer {c.external_id} ({', '.join(sorted(change.model_fields_set))})")


@customer.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--after", default=None, help="Start after this external id (the cursor printed below a page).")
@click.option("--limit", default=100, show_default=True, help="Customers per page (1-500).")
@click.pass_context
def customer_list(ctx: click.Context, tenant_name: str, after: str | None, limit: int) -> None:
    """List TENANT's customers by external id, a page at a time.

    \b
    Example:
      tally customer list acme --limit 50
      tally customer list acme --limit 50 --after cus_42
    """
    from invoicing.catalog import list_customers

    engine, tenant_id = open_tenant(ctx, tenant_name)
    page = list_customers(engine, tenant_id, after=after, limit=limit)
    rows = [[c.external_id, c.name, c.currency, c.timezone, c.email] for c in page.customers]
    print_table("customers", ["external id", "name", "currency", "time zone", "email"], rows)
    if page.next_after is not None:
        click.echo(f"more: tally customer list {tenant_name} --after {page.next_after} --limit {limit}")


@customer.command("show")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("external_id")
@click.option("--at", "at_text", default=None, help="As of this ISO 8601 instant [default: now].")
@click.pass_context
def customer_show(ctx: click.Context, tenant_name: str, external_id: str, at_text: str | None) -> None:
    """Show one customer's whole picture: details, subscriptions, lifecycle stage, this period's usage
    and spend so far, balances, invoices and SLA status.

    \b
    Example:
      tally customer show acme cus_42
    """
    from invoicing.insight import customer_360

    engine, tenant_id = open_tenant(ctx, tenant_name)
    c = customer_360(engine, tenant_id, external_id, instant_or_now(at_text))
    cu = c.customer
    address = "" if cu.address is None else ", ".join(v for v in cu.address.model_dump().values() if v)
    period = "" if c.period is None else f"{utc_minute(c.period.start)} → {utc_minute(c.period.end)}"
    fields = [
        ["external id", cu.external_id], ["name", cu.name], ["currency", cu.currency], ["time zone", cu.timezone],
        ["email", cu.email], ["tax region", cu.tax_region], ["tax id", cu.tax_id], ["address", address],
        ["invoice grouping", cu.invoice_grouping or "the tenant's (tally profile show)"],
        ["metadata", ", ".join(f"{k}={v}" for k, v in cu.metadata.items())], ["created", utc_minute(cu.created_at)],
        ["stage", f"{c.stage.name}: {c.stage.reason}"], ["current period", period],
        ["spend so far", f"{c.spend.amount:f} {c.spend.unit}"],
    ]  # fmt: skip
    print_table(f"customer {cu.external_id}", ["field", "value"], fields)
    subscription_table(engine, tenant_id, c.subscriptions)
    if c.usage:
        rows = [[u.meter, f"{u.quantity:f}", f"{u.previous:f}", u.unit] for u in c.usage]
        print_table("usage this period", ["meter", "so far", "same stretch last period", "unit"], rows)
    if c.balances:
        rows = [[b.unit, f"{b.balance:f}", f"{b.available:f}", f"{b.pending_in:f}"] for b in c.balances]
        print_table("balances", ["unit", "balance", "available", "pending in"], rows)
    invoices = [*c.open_invoices, *c.past_invoices]
    if invoices:
        rows = [[i.label, i.kind, i.status, money(i.total, i.currency), utc_minute(i.due_at)] for i in invoices]
        print_table("invoices (open, then the last paid or void)", ["invoice", "kind", "status", "total", "due"], rows)
    if c.sla:
        rows = [
            [s.charge, s.meter, "" if s.measured is None else f"{s.measured:f}", f"{s.credit:f}", s.status]
            for s in c.sla
        ]
        print_table("SLA this period", ["charge", "meter", "measured", "credit", "status"], rows)
