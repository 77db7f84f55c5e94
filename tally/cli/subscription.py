"""`tally subscription`: subscribe customers to plans and move them through their lifecycle."""

from __future__ import annotations

import click

from tally.cli._common import instant_or_now, open_tenant, print_grid, subscription_table, utc_minute


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

    engine, tenant_id = open_tenant(ctx, tenant_name)
    sub = create_subscription(
        engine,
        tenant_id,
        customer_id,
        plan_code,
        instant_or_now(at_text),
        version=version,
        anchor=None if anchor is None else instant_or_now(anchor, "--anchor"),
        end=None if end is None else instant_or_now(end, "--end"),
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

    engine, tenant_id = open_tenant(ctx, tenant_name)
    subscription_table(engine, tenant_id, list_subscriptions(engine, tenant_id, customer_id))


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

    engine, tenant_id = open_tenant(ctx, tenant_name)
    sub = get_subscription(engine, tenant_id, subscription_id)
    subscription_table(engine, tenant_id, [sub])
    rows = [
        [utc_minute(h.effective_at), h.kind + (f" for {utc_minute(h.scheduled_for)}" if h.scheduled_for else ""),
         h.state.value, get_plan_version_by_id(engine, tenant_id, h.plan_version_id).label, h.actor, h.reason]
        for h in get_history(engine, tenant_id, subscription_id)
    ]  # fmt: skip
    print_grid(f"history of subscription {sub.id}", ["effective", "change", "state", "plan", "actor", "reason"], rows)


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

    engine, tenant_id = open_tenant(ctx, tenant_name)
    result = change_plan(
        engine, tenant_id, subscription_id, plan_code, instant_or_now(at_text), version=version,
        timing="period_end" if at_period_end else "now", actor=actor, reason=reason,
    )  # fmt: skip
    sub = result.subscription
    if result.proration is None:
        click.echo(f"subscription {sub.id} moves to {plan_code} at {utc_minute(sub.pending_change_at)}")
        return
    old_d, new_d = result.proration.fractions("day")
    old_s, new_s = result.proration.fractions("second")
    click.echo(
        f"subscription {sub.id} moved to {plan_code} at {utc_minute(result.effective_at)}; "
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
        from invoicing.subscriptions import pause_subscription, resume_subscription, withdraw_scheduled

        engine, tenant_id = open_tenant(ctx, tenant_name)
        operation = {"pause": pause_subscription, "resume": resume_subscription, "withdraw": withdraw_scheduled}[name]
        sub = operation(engine, tenant_id, subscription_id, instant_or_now(at_text), actor=actor, reason=reason)
        if name == "withdraw":
            click.echo(f"subscription {sub.id} is {sub.state.value}; nothing is scheduled for its period end any more")
            return
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


subscription.add_command(
    _lifecycle(
        "withdraw",
        "Withdraw the plan change or end scheduled for subscription ID's period end; it bills on as before.",
        "tally subscription withdraw acme 7 --reason 'customer stays'",
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

    engine, tenant_id = open_tenant(ctx, tenant_name)
    sub = cancel_subscription(
        engine, tenant_id, subscription_id, instant_or_now(at_text),
        timing="period_end" if at_period_end else "now", actor=actor, reason=reason,
    )  # fmt: skip
    click.echo(f"subscription {sub.id} is {sub.state.value}, ends {utc_minute(sub.ends_at)}")
