"""CLI commands for the billing catalog: customers, plans, subscriptions (registered by tally.cli).

`tally.cli` is imported inside the commands, never at module top: cli.py imports this module to
register COMMANDS, so a top-level import would be circular. Instants default to the current time
here, at the edge; the domain functions always receive them explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from invoicing.catalog import PlanVersion
    from invoicing.subscriptions import Subscription


def _at(text: str | None, flag: str = "--at") -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.ClickException(f"{flag} {text!r} is not an ISO 8601 instant; e.g. 2026-02-01T00:00Z") from None
    if value.tzinfo is None:
        raise click.ClickException(f"{flag} {text!r} has no time zone; add Z or an offset, e.g. 2026-02-01T00:00Z")
    return value


def _tenant(ctx: click.Context, name: str) -> tuple[Engine, int]:
    from metering.tenant import get_tenant
    from tally.cli import _engine

    engine = _engine(ctx)
    return engine, get_tenant(engine, name).id


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def _grid(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Like tally.cli._table, but long values fold onto more lines instead of being cut with an ellipsis:
    an id or an instant shown half is worse than a taller row."""
    from rich.table import Table

    from tally.cli import console

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# --- customers -----------------------------------------------------------------------------------------------


@click.group()
def customer() -> None:
    """Create, list and show the customers a tenant bills."""


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
) -> None:
    """Create customer EXTERNAL_ID (your own id for them; events name it) for TENANT.

    \b
    Example:
      tally customer create acme cus_42 --name "Ada Ltd" --currency EUR \\
          --timezone Europe/Paris --email billing@ada.example --meta crm=991
    """
    from invoicing.catalog import Address, CustomerDefinition, create_customer

    metadata: dict[str, str] = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.ClickException(f"--meta {item!r} must be KEY=VALUE, e.g. --meta crm=991")
        metadata[key] = value
    parsed_address = None
    if address is not None:
        try:
            parsed_address = Address.model_validate(json.loads(address))
        except json.JSONDecodeError as exc:
            raise click.ClickException(f'--address is not JSON ({exc.msg}); e.g. \'{{"city":"Paris"}}\'') from None
    engine, tenant_id = _tenant(ctx, tenant_name)
    definition = CustomerDefinition(
        external_id=external_id,
        name=name,
        currency=currency,
        timezone=tz,
        email=email,
        tax_region=tax_region,
        address=parsed_address,
        metadata=metadata,
    )
    c = create_customer(engine, tenant_id, definition, datetime.now(UTC))
    click.echo(f"created customer {c.external_id} ({c.currency}, {c.timezone}); next: tally subscription create "
               f"{tenant_name} {c.external_id} PLAN")  # fmt: skip


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
    from tally.cli import _table

    engine, tenant_id = _tenant(ctx, tenant_name)
    page = list_customers(engine, tenant_id, after=after, limit=limit)
    rows = [[c.external_id, c.name, c.currency, c.timezone, c.email] for c in page.customers]
    _table("customers", ["external id", "name", "currency", "time zone", "email"], rows)
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
    from tally.cli import _table

    engine, tenant_id = _tenant(ctx, tenant_name)
    c = customer_360(engine, tenant_id, external_id, _at(at_text))
    cu = c.customer
    address = "" if cu.address is None else ", ".join(v for v in cu.address.model_dump().values() if v)
    period = "" if c.period is None else f"{_when(c.period.start)} → {_when(c.period.end)}"
    fields = [
        ["external id", cu.external_id], ["name", cu.name], ["currency", cu.currency], ["time zone", cu.timezone],
        ["email", cu.email], ["tax region", cu.tax_region], ["address", address],
        ["metadata", ", ".join(f"{k}={v}" for k, v in cu.metadata.items())], ["created", _when(cu.created_at)],
        ["stage", f"{c.stage.name}: {c.stage.reason}"], ["current period", period],
        ["spend so far", f"{c.spend.amount:f} {c.spend.unit}"],
    ]  # fmt: skip
    _table(f"customer {cu.external_id}", ["field", "value"], fields)
    _subscription_table(engine, tenant_id, c.subscriptions)
    if c.usage:
        rows = [[u.meter, f"{u.quantity:f}", f"{u.previous:f}", u.unit] for u in c.usage]
        _table("usage this period", ["meter", "so far", "same stretch last period", "unit"], rows)
    if c.balances:
        rows = [[b.unit, f"{b.balance:f}", f"{b.available:f}", f"{b.pending_in:f}"] for b in c.balances]
        _table("balances", ["unit", "balance", "available", "pending in"], rows)
    invoices = [*c.open_invoices, *c.past_invoices]
    if invoices:
        rows = [[i.label, i.kind, i.status, f"{i.total:f} {i.currency}", _when(i.due_at)] for i in invoices]
        _table("invoices (open, then the last paid or void)", ["invoice", "kind", "status", "total", "due"], rows)
    if c.sla:
        rows = [
            [s.charge, s.meter, "" if s.measured is None else f"{s.measured:f}", f"{s.credit:f}", s.status]
            for s in c.sla
        ]
        _table("SLA this period", ["charge", "meter", "measured", "credit", "status"], rows)


@click.command("portfolio")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--at", "at_text", default=None, help="As of this ISO 8601 instant [default: now].")
@click.pass_context
def portfolio_command(ctx: click.Context, tenant_name: str, at_text: str | None) -> None:
    """Show TENANT's customers per lifecycle stage, with the revenue of the last 30 days at each
    (finalized or paid invoices) and a few customers of each stage.

    \b
    Example:
      tally portfolio acme
    """
    from invoicing.insight import portfolio
    from tally.cli import _table

    engine, tenant_id = _tenant(ctx, tenant_name)
    p = portfolio(engine, tenant_id, _at(at_text))
    rows = [
        [s.stage, str(s.customers), ", ".join(f"{a.amount:f} {a.unit}" for a in s.revenue), ", ".join(s.sample)]
        for s in p.stages
    ]
    _table(f"portfolio: {p.customers} customers", ["stage", "customers", "revenue (30 days)", "for example"], rows)


# --- plans ---------------------------------------------------------------------------------------------------


def _load(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{file}: not valid JSON ({exc.msg} at line {exc.lineno}); see docs/billing.md for the plan format"
        ) from None


@click.group()
def plan() -> None:
    """Create, version, publish and inspect plans (JSON files; see docs/billing.md)."""


@plan.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def plan_create(ctx: click.Context, tenant_name: str, file: Path) -> None:
    """Create a plan from FILE as draft v1; publish it with `tally plan publish TENANT CODE`.

    \b
    Example:
      tally plan create acme pro.json
    where pro.json holds (prices are rating JSON, see docs/rating.md):
      {"code": "pro", "name": "Pro", "currency": "USD", "interval": "monthly",
       "trial_days": 14,
       "charges": [
         {"code": "base", "kind": "flat",
          "price": {"model": "flat", "amount_per_period": "49", "billing": "in_advance"}},
         {"code": "calls", "kind": "usage", "meter": "api_calls",
          "price": {"model": "per_unit", "unit_amount": "0.001"}}]}
    """
    from invoicing.catalog import create_plan

    engine, tenant_id = _tenant(ctx, tenant_name)
    v = create_plan(engine, tenant_id, _load(file), datetime.now(UTC))
    click.echo(f"created {v.label} (draft, {len(v.charges)} charges); next: tally plan publish {tenant_name} {v.code}")


@plan.command("edit")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def plan_edit(ctx: click.Context, tenant_name: str, file: Path) -> None:
    """Save FILE as the plan's draft: rewrites the latest draft, or creates draft N+1 after a published vN.

    \b
    Example:
      tally plan edit acme pro.json && tally plan publish acme pro
    """
    from invoicing.catalog import edit_plan

    engine, tenant_id = _tenant(ctx, tenant_name)
    v = edit_plan(engine, tenant_id, _load(file), datetime.now(UTC))
    click.echo(f"saved {v.label} (draft); next: tally plan publish {tenant_name} {v.code}")


@plan.command("publish")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("code")
@click.pass_context
def plan_publish(ctx: click.Context, tenant_name: str, code: str) -> None:
    """Publish the latest draft of plan CODE (its meters must exist); published versions never change.

    \b
    Example:
      tally plan publish acme pro
    """
    from invoicing.catalog import publish_plan

    engine, tenant_id = _tenant(ctx, tenant_name)
    v = publish_plan(engine, tenant_id, code, datetime.now(UTC))
    click.echo(f"published {v.label}; subscribe with: tally subscription create {tenant_name} CUSTOMER {v.code}")


@plan.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def plan_list(ctx: click.Context, tenant_name: str) -> None:
    """List TENANT's plans with their latest and published versions.

    \b
    Example:
      tally plan list acme
    """
    from invoicing.catalog import list_plans
    from tally.cli import _table

    engine, tenant_id = _tenant(ctx, tenant_name)
    rows = [
        [p.code, p.name, f"v{p.latest_version} ({p.latest_status.value})",
         "-" if p.published_version is None else f"v{p.published_version}"]
        for p in list_plans(engine, tenant_id)
    ]  # fmt: skip
    _table("plans", ["code", "name", "latest", "published"], rows)


@plan.command("show")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("code")
@click.option("--version", type=int, default=None, help="Version number [default: the latest].")
@click.pass_context
def plan_show(ctx: click.Context, tenant_name: str, code: str, version: int | None) -> None:
    """Show a plan version and its charges.

    \b
    Example:
      tally plan show acme pro --version 2
    """
    from invoicing.catalog import get_plan_version

    engine, tenant_id = _tenant(ctx, tenant_name)
    _plan_table(get_plan_version(engine, tenant_id, code, version))


def _plan_table(v: PlanVersion) -> None:
    from tally.cli import _table

    title = f"{v.label} ({v.status.value}) · {v.name} · {v.currency} · {v.interval.value} · trial {v.trial_days} days"
    rows = [
        [c.code, c.kind, c.meter or "", c.group_by or "", c.billing, json.dumps(c.price_definition, sort_keys=True)]
        for c in v.charges
    ]
    _table(title, ["charge", "kind", "meter", "group by", "billing", "price"], rows)


# --- subscriptions -------------------------------------------------------------------------------------------


@click.group()
def subscription() -> None:
    """Subscribe customers to published plans and move them through trial, active, paused, cancelled."""


_AT = click.option("--at", "at_text", default=None, help="Effective instant, ISO 8601 with zone [default: now].")
_ACTOR = click.option("--actor", default="cli", show_default=True, help="Who asks (kept in the history).")
_REASON = click.option("--reason", default="", help="Why (kept in the history).")


@subscription.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer_id", metavar="CUSTOMER")
@click.argument("plan_code", metavar="PLAN")
@click.option("--version", type=int, default=None, help="Plan version [default: the latest published].")
@click.option("--anchor", default=None, help="Billing anchor instant; its local date sets the period day.")
@click.option("--end", default=None, help="Scheduled end instant.")
@_AT
@_ACTOR
@_REASON
@click.pass_context
def subscription_create(
    ctx: click.Context,
    tenant_name: str,
    customer_id: str,
    plan_code: str,
    version: int | None,
    anchor: str | None,
    end: str | None,
    at_text: str | None,
    actor: str,
    reason: str,
) -> None:
    """Subscribe CUSTOMER to PLAN (starts in trial if the plan has one, else active).

    \b
    Example:
      tally subscription create acme cus_42 pro --at 2026-02-01T00:00Z
    """
    from invoicing.subscriptions import create_subscription

    engine, tenant_id = _tenant(ctx, tenant_name)
    sub = create_subscription(
        engine,
        tenant_id,
        customer_id,
        plan_code,
        _at(at_text),
        version=version,
        anchor=None if anchor is None else _at(anchor, "--anchor"),
        end=None if end is None else _at(end, "--end"),
        actor=actor,
        reason=reason,
    )
    click.echo(f"created subscription {sub.id} ({sub.state.value}) for {customer_id} on {plan_code}")


@subscription.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--customer", "customer_id", default=None, help="Only this customer's subscriptions.")
@click.pass_context
def subscription_list(ctx: click.Context, tenant_name: str, customer_id: str | None) -> None:
    """List TENANT's subscriptions.

    \b
    Example:
      tally subscription list acme --customer cus_42
    """
    from invoicing.subscriptions import list_subscriptions

    engine, tenant_id = _tenant(ctx, tenant_name)
    _subscription_table(engine, tenant_id, list_subscriptions(engine, tenant_id, customer_id))


def _subscription_table(engine: Engine, tenant_id: int, subs: list[Subscription]) -> None:
    from invoicing.catalog import get_plan_version_by_id

    labels: dict[int, str] = {}

    def label(version_id: int | None) -> str:
        if version_id is None:
            return ""
        if version_id not in labels:
            labels[version_id] = get_plan_version_by_id(engine, tenant_id, version_id).label
        return labels[version_id]

    rows = [
        [str(s.id), s.customer_external_id, label(s.plan_version_id), s.state.value, _when(s.started_at),
         _when(s.ends_at), f"{label(s.pending_plan_version_id)} {_when(s.pending_change_at)}".strip()]
        for s in subs
    ]  # fmt: skip
    _grid("subscriptions", ["id", "customer", "plan", "state", "started", "ends", "scheduled change"], rows)


@subscription.command("show")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("subscription_id", metavar="ID", type=int)
@click.pass_context
def subscription_show(ctx: click.Context, tenant_name: str, subscription_id: int) -> None:
    """Show a subscription and its full history (who changed what, when and why).

    \b
    Example:
      tally subscription show acme 7
    """
    from invoicing.catalog import get_plan_version_by_id
    from invoicing.subscriptions import get_history, get_subscription

    engine, tenant_id = _tenant(ctx, tenant_name)
    sub = get_subscription(engine, tenant_id, subscription_id)
    _subscription_table(engine, tenant_id, [sub])
    rows = [
        [_when(h.effective_at), h.kind + (f" for {_when(h.scheduled_for)}" if h.scheduled_for else ""),
         h.state.value, get_plan_version_by_id(engine, tenant_id, h.plan_version_id).label, h.actor, h.reason]
        for h in get_history(engine, tenant_id, subscription_id)
    ]  # fmt: skip
    _grid(f"history of subscription {sub.id}", ["effective", "change", "state", "plan", "actor", "reason"], rows)


@subscription.command("change")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("subscription_id", metavar="ID", type=int)
@click.argument("plan_code", metavar="PLAN")
@click.option("--version", type=int, default=None, help="Plan version [default: the latest published].")
@click.option("--at-period-end", is_flag=True, help="Switch when the current period ends instead of now.")
@_AT
@_ACTOR
@_REASON
@click.pass_context
def subscription_change(
    ctx: click.Context,
    tenant_name: str,
    subscription_id: int,
    plan_code: str,
    version: int | None,
    at_period_end: bool,
    at_text: str | None,
    actor: str,
    reason: str,
) -> None:
    """Move subscription ID to PLAN now (prints the proration split) or at period end.

    \b
    Example:
      tally subscription change acme 7 enterprise --reason upgrade
      tally subscription change acme 7 basic --at-period-end
    """
    from invoicing.subscriptions import change_plan

    engine, tenant_id = _tenant(ctx, tenant_name)
    result = change_plan(
        engine, tenant_id, subscription_id, plan_code, _at(at_text), version=version,
        timing="period_end" if at_period_end else "now", actor=actor, reason=reason,
    )  # fmt: skip
    sub = result.subscription
    if result.proration is None:
        click.echo(f"subscription {sub.id} moves to {plan_code} at {_when(sub.pending_change_at)}")
        return
    old_d, new_d = result.proration.fractions("day")
    old_s, new_s = result.proration.fractions("second")
    click.echo(
        f"subscription {sub.id} moved to {plan_code} at {_when(result.effective_at)}; "
        f"old plan share {old_d} by day ({old_s} by second), new plan share {new_d} by day ({new_s} by second)"
    )


def _lifecycle(name: str, verb: str, example: str) -> click.Command:
    @click.command(name)
    @click.argument("tenant_name", metavar="TENANT")
    @click.argument("subscription_id", metavar="ID", type=int)
    @_AT
    @_ACTOR
    @_REASON
    @click.pass_context
    def command(
        ctx: click.Context, tenant_name: str, subscription_id: int, at_text: str | None, actor: str, reason: str
    ) -> None:
        from invoicing.subscriptions import pause_subscription, resume_subscription

        engine, tenant_id = _tenant(ctx, tenant_name)
        operation = pause_subscription if name == "pause" else resume_subscription
        sub = operation(engine, tenant_id, subscription_id, _at(at_text), actor=actor, reason=reason)
        click.echo(f"subscription {sub.id} is {sub.state.value}")

    command.help = f"{verb}\n\n    \b\n    Example:\n      {example}\n"
    return command


subscription.add_command(
    _lifecycle(
        "pause",
        "Pause subscription ID: no fees and no usage are billed until it is resumed (only from active).",
        "tally subscription pause acme 7 --reason 'card expired'",
    )
)
subscription.add_command(
    _lifecycle(
        "resume",
        "Resume paused subscription ID; the rest of the current period is billed from the resume instant.",
        "tally subscription resume acme 7",
    )
)


@subscription.command("cancel")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("subscription_id", metavar="ID", type=int)
@click.option("--at-period-end", is_flag=True, help="End when the current period (or trial) ends instead of now.")
@_AT
@_ACTOR
@_REASON
@click.pass_context
def subscription_cancel(
    ctx: click.Context,
    tenant_name: str,
    subscription_id: int,
    at_period_end: bool,
    at_text: str | None,
    actor: str,
    reason: str,
) -> None:
    """Cancel subscription ID now (usage is billed at once, the unused fee credited) or at period end.

    \b
    Example:
      tally subscription cancel acme 7 --at-period-end --reason "moving to annual"
    """
    from invoicing.subscriptions import cancel_subscription

    engine, tenant_id = _tenant(ctx, tenant_name)
    sub = cancel_subscription(
        engine, tenant_id, subscription_id, _at(at_text),
        timing="period_end" if at_period_end else "now", actor=actor, reason=reason,
    )  # fmt: skip
    click.echo(f"subscription {sub.id} is {sub.state.value}, ends {_when(sub.ends_at)}")


# --- invoices ------------------------------------------------------------------------------------------------


def _money(minor: int, currency: str) -> str:
    from rating.unit import currency as unit

    return f"{Decimal(minor).scaleb(-unit(currency).scale)} {currency}"


def _invoice_table(inv: Any) -> None:
    _grid(
        f"{inv.label} ({inv.kind}, {inv.status}) {_when(inv.period_start)} – {_when(inv.period_end)}",
        ["#", "kind", "charge", "group", "quantity", "unit price", "amount"],
        [
            [str(ln.position), ln.kind, ln.charge_code, ln.group_key, str(ln.quantity), ln.unit_price or "",
             _money(ln.amount, inv.currency)]
            for ln in inv.lines
        ],
    )  # fmt: skip
    click.echo(
        f"subtotal {_money(inv.subtotal, inv.currency)}  tax {_money(inv.tax, inv.currency)}  "
        f"credits {_money(inv.credits_applied, inv.currency)}  total {_money(inv.total, inv.currency)}"
    )


@click.group()
def invoice() -> None:
    """Run billing cycles and manage invoices: list, show, finalize, pay, void, correct, preview, export."""


@invoice.command("run")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--as-of", "as_of", default=None, help="Bill everything due up to this instant [default: now].")
@click.option("--batch-size", default=200, show_default=True, help="Invoices written per transaction.")
@click.pass_context
def invoice_run(ctx: click.Context, tenant_name: str, as_of: str | None, batch_size: int) -> None:
    """Write draft invoices for everything due as of --as-of. Safe to re-run and to run in parallel.

    \b
    Example:
      tally invoice run acme --as-of 2026-02-01T00:00Z
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from invoicing.documents import run_cycle
    from tally.cli import err_console

    engine, tenant_id = _tenant(ctx, tenant_name)
    at = _at(as_of, "--as-of")
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("invoicing", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = run_cycle(engine, tenant_id, at, progress, batch_size=batch_size)
    rows = [["invoices written", str(summary.created)], ["adjustments", str(summary.adjustments)],
            ["due items", str(summary.due)], ["errors", str(summary.failed)]]  # fmt: skip
    for ccy in sorted(summary.totals):
        rows.append([f"total {ccy}", _money(summary.totals[ccy], ccy)])
        rows.append([f"credits applied {ccy}", _money(summary.credits.get(ccy, 0), ccy)])
    _grid(f"invoice run {summary.run_id} as of {_when(summary.as_of)}", ["", "value"], rows)
    for error in summary.errors[:20]:
        click.echo(f"error: {error}", err=True)
    if summary.failed:
        raise click.ClickException(f"{summary.failed} item(s) failed; fix them and run again (done items are kept)")


def _external_ids(engine: Engine, tenant_id: int, ids: set[int]) -> dict[int, str]:
    """Customers' external ids (what users know them by) for internal ids, in one query."""
    from sqlalchemy import select

    from invoicing.tables import customers

    c = customers.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.id, c.external_id).where(c.tenant_id == tenant_id, c.id.in_(ids or {0})))
        return {int(r.id): str(r.external_id) for r in rows}


@invoice.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--customer", default=None, help="Only this customer's (external id).")
@click.option("--status", default=None, type=click.Choice(["draft", "finalized", "paid", "void"]))
@click.option("--after", "after_id", default=0, show_default=True, help="Start after this invoice id.")
@click.option("--limit", default=100, show_default=True)
@click.pass_context
def invoice_list(
    ctx: click.Context, tenant_name: str, customer: str | None, status: str | None, after_id: int, limit: int
) -> None:
    """List invoices by id.

    \b
    Example:
      tally invoice list acme --customer cus_42 --status draft
    """
    from invoicing.documents import list_invoices

    engine, tenant_id = _tenant(ctx, tenant_name)
    found = list_invoices(engine, tenant_id, customer=customer, status=status, after_id=after_id, limit=limit)
    external = _external_ids(engine, tenant_id, {i.customer_id for i in found})
    _grid(
        f"invoices of {tenant_name}",
        ["id", "number", "kind", "status", "customer", "period", "timing", "total"],
        [
            [str(i.id), str(i.number or ""), i.kind, i.status, external.get(i.customer_id, str(i.customer_id)),
             f"{_when(i.period_start)} – {_when(i.period_end)}", i.timing or "", _money(i.total, i.currency)]
            for i in found
        ],
    )  # fmt: skip


def _invoice_id_command(name: str, help_text: str) -> Callable[[Callable[..., None]], click.Command]:
    def decorate(fn: Callable[..., None]) -> click.Command:
        wrapped = click.argument("tenant_name", metavar="TENANT")(
            click.argument("invoice_id", type=int)(click.pass_context(fn))
        )
        return invoice.command(name, help=help_text)(wrapped)

    return decorate


@_invoice_id_command("show", "Show invoice INVOICE_ID with its lines.\n\n\b\nExample:\n  tally invoice show acme 12")
def invoice_show(ctx: click.Context, tenant_name: str, invoice_id: int) -> None:
    from invoicing.documents import get_invoice

    engine, tenant_id = _tenant(ctx, tenant_name)
    _invoice_table(get_invoice(engine, tenant_id, invoice_id))


@_invoice_id_command("finalize", "Finalize draft INVOICE_ID: it takes the next number and never changes again.")
def invoice_finalize(ctx: click.Context, tenant_name: str, invoice_id: int) -> None:
    from invoicing.documents import finalize_invoice

    engine, tenant_id = _tenant(ctx, tenant_name)
    inv = finalize_invoice(engine, tenant_id, invoice_id, _at(None))
    click.echo(f"invoice {inv.id} finalized as {inv.label}, total {_money(inv.total, inv.currency)}")


@_invoice_id_command("pay", "Mark finalized INVOICE_ID paid.")
def invoice_pay(ctx: click.Context, tenant_name: str, invoice_id: int) -> None:
    from invoicing.documents import mark_paid

    engine, tenant_id = _tenant(ctx, tenant_name)
    inv = mark_paid(engine, tenant_id, invoice_id, _at(None))
    click.echo(f"invoice {inv.id} ({inv.label}) is paid")


@invoice.command("void")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("invoice_id", type=int)
@click.option("--reason", default="", help="Why, kept on the invoice.")
@click.pass_context
def invoice_void(ctx: click.Context, tenant_name: str, invoice_id: int, reason: str) -> None:
    """Void draft or finalized INVOICE_ID (it keeps its number; a re-run does not bill it again)."""
    from invoicing.documents import void_invoice

    engine, tenant_id = _tenant(ctx, tenant_name)
    inv = void_invoice(engine, tenant_id, invoice_id, _at(None), reason)
    click.echo(f"invoice {inv.id} ({inv.label}) is void")


@invoice.command("correct")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("invoice_id", type=int)
@click.option("--at", "at_text", default=None, help="History and usage as known at this instant [default: now].")
@click.pass_context
def invoice_correct(ctx: click.Context, tenant_name: str, invoice_id: int, at_text: str | None) -> None:
    """Recompute INVOICE_ID and write the difference as a linked credit note or adjustment."""
    from invoicing.documents import correct_invoice

    engine, tenant_id = _tenant(ctx, tenant_name)
    inv = correct_invoice(engine, tenant_id, invoice_id, _at(at_text))
    if inv is None:
        click.echo(f"invoice {invoice_id} is still right; nothing written")
        return
    _invoice_table(inv)


@invoice.command("preview")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.option("--at", "at_text", default=None, help="Usage up to this instant [default: now].")
@click.pass_context
def invoice_preview(ctx: click.Context, tenant_name: str, customer: str, at_text: str | None) -> None:
    """Upcoming invoices of CUSTOMER: what is due by the end of the current period, nothing written.

    \b
    Example:
      tally invoice preview acme cus_42
    """
    from invoicing.documents import preview_invoice

    engine, tenant_id = _tenant(ctx, tenant_name)
    found = preview_invoice(engine, tenant_id, customer, _at(at_text))
    if not found:
        click.echo(f"nothing upcoming for {customer}")
    for inv in found:
        _invoice_table(inv)


@invoice.command("export")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("invoice_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "pdf"]), default="json", show_default=True)
@click.option(
    "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
    help="Write to this file instead of stdout (required for pdf).",
)  # fmt: skip
@click.pass_context
def invoice_export(ctx: click.Context, tenant_name: str, invoice_id: int, fmt: str, output: Path | None) -> None:
    """Export INVOICE_ID as JSON or CSV (stdout or --output) or as a PDF document (--output).

    \b
    Example:
      tally invoice export acme 12 --format csv > inv-12.csv
      tally invoice export acme 12 --format pdf --output INV-000012.pdf
    """
    from invoicing.documents import export_invoice, get_invoice

    engine, tenant_id = _tenant(ctx, tenant_name)
    if fmt == "pdf":
        from invoicing.documents import render_invoice_pdf

        if output is None:
            raise click.ClickException("--format pdf writes a file: add --output FILE, e.g. --output invoice.pdf")
        data = render_invoice_pdf(engine, tenant_id, invoice_id)
        output.write_bytes(data)
        click.echo(f"wrote {output} ({len(data):,} bytes)")
        return
    text = export_invoice(get_invoice(engine, tenant_id, invoice_id), fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text)
    click.echo(f"wrote {output}")


@invoice.command("tax")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("region")
@click.argument("rate")
@click.option("--inclusive", is_flag=True, help="Prices include the tax (default: tax is added).")
@click.pass_context
def invoice_tax(ctx: click.Context, tenant_name: str, region: str, rate: str, inclusive: bool) -> None:
    """Set the tax RATE (percent) for customers whose tax region is REGION.

    \b
    Example:
      tally invoice tax acme FR 20
    """
    from invoicing.documents import set_tax_rate

    engine, tenant_id = _tenant(ctx, tenant_name)
    t = set_tax_rate(engine, tenant_id, region, rate, inclusive, _at(None))
    click.echo(f"tax {t.region}: {t.rate}% {'inclusive' if t.inclusive else 'exclusive'}")


# --- journal -------------------------------------------------------------------------------------------------


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

    engine, tenant_id = _tenant(ctx, tenant_name)
    start = datetime(1970, 1, 1, tzinfo=UTC) if from_text is None else _at(from_text, "--from")
    end = _at(to_text, "--to")
    text = export_journal(engine, tenant_id, start, end, summary=summary)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text)
    click.echo(f"wrote {output} ({max(text.count(chr(10)) - 1, 0)} rows)")


COMMANDS: list[click.Command] = [customer, plan, subscription, invoice, journal, portfolio_command]
