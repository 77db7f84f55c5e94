"""`tally coupon`: coupons and the discounts applying them (create, list, apply, remove, discounts).

Percents and amounts are typed as exact decimals, never floats: `--percent 12.5`, `--amount "5.00 USD"`
or `--amount 5.00 --currency USD`. Tenants by name; a discount by its id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tally.cli._common import BILLING_WORDING, fail, instant_or_now, open_tenant, parse_instant, print_grid, utc_minute

if TYPE_CHECKING:
    from invoicing.catalog import Discount

#: The CLI's name for each coupon field, so a refused definition points at what was typed.
FLAGS = {
    "code": "CODE",
    "kind": "--percent/--amount",
    "applies_to": "--applies-to",
    "max_redemptions": "--max-redemptions",
    "redeem_by": "--redeem-by",
}


@click.group("coupon")
def coupon() -> None:
    """Coupons and discounts: create, list, apply, remove, discounts."""


def _amount(amount: str | None, currency: str | None) -> tuple[str | None, str | None]:
    """`5.00 USD`, or `5.00` with --currency; the decimal itself is checked by the domain's parser."""
    if amount is None:
        if currency is not None:
            raise click.UsageError("--currency goes with --amount (a percent coupon has no currency)")
        return None, None
    value, _, unit = amount.strip().partition(" ")
    unit = unit.strip()
    if unit and currency is not None and unit != currency:
        raise click.UsageError(f"--amount says {unit} but --currency says {currency}; give the currency once")
    return value, unit or currency


@coupon.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("code")
@click.option("--percent", default=None, help='Percent off, more than 0 and at most 100, e.g. "12.5".')
@click.option("--amount", default=None, help='Amount off per period: "5.00 USD", or "5.00" with --currency.')
@click.option("--currency", default=None, help="ISO 4217 currency of --amount.")
@click.option(
    "--duration", type=click.Choice(["once", "repeating", "forever"]), default="once", show_default=True,
    help="One billing period, --periods of them, or every period.",
)  # fmt: skip
@click.option("--periods", type=int, default=None, help="With --duration repeating: how many billing periods.")
@click.option("--name", default="", help="Display name (default: the code).")
@click.option("--applies-to", multiple=True, help="Charge code it discounts (repeat); default every charge.")
@click.option("--redeem-by", default=None, help="ISO 8601 instant from which it can no longer be applied.")
@click.option("--max-redemptions", type=int, default=None, help="How many times it may be applied in all.")
@click.pass_context
def coupon_create(
    ctx: click.Context, tenant_name: str, code: str, percent: str | None, amount: str | None, currency: str | None,
    duration: str, periods: int | None, name: str, applies_to: tuple[str, ...], redeem_by: str | None,
    max_redemptions: int | None,
) -> None:  # fmt: skip
    """Create coupon CODE: a percent or an amount off, once, for N periods or forever.

    \b
    Examples:
      tally coupon create acme WELCOME --percent 12.5 --duration repeating --periods 3
      tally coupon create acme FIVE --amount "5.00 USD"
      tally coupon create acme LOYAL --percent 10 --duration forever --applies-to base
    """
    from datetime import UTC, datetime

    from invoicing.catalog import CouponDefinition, InvalidCoupon, create_coupon

    if (percent is None) == (amount is None):
        raise click.UsageError("give --percent or --amount, exactly one of them")
    value, unit = _amount(amount, currency)
    definition = CouponDefinition(
        code=code, kind="percent" if percent is not None else "amount", duration=duration, name=name,
        percent=percent, amount=value, currency=unit, periods=periods, applies_to=applies_to or None,
        redeem_by=None if redeem_by is None else parse_instant(redeem_by, "--redeem-by", wording=BILLING_WORDING),
        max_redemptions=max_redemptions,
    )  # fmt: skip
    engine, tenant_id = open_tenant(ctx, tenant_name)
    try:
        c = create_coupon(engine, tenant_id, definition, datetime.now(UTC))
    except InvalidCoupon as exc:
        fail(f"{FLAGS.get(exc.field, '--' + exc.field.replace('_', '-'))}: {exc.reason}")
    click.echo(f"created coupon {c.code}: {c.terms}")


@coupon.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def coupon_list(ctx: click.Context, tenant_name: str) -> None:
    """TENANT's coupons by code."""
    from invoicing.catalog import list_coupons

    engine, tenant_id = open_tenant(ctx, tenant_name)
    rows: list[list[str]] = []
    after: str | None = None
    while True:
        page = list_coupons(engine, tenant_id, after, 500)
        rows += [
            [c.code, c.name, c.terms, utc_minute(c.redeem_by),
             f"{c.times_applied}" + ("" if c.max_redemptions is None else f" of {c.max_redemptions}")]
            for c in page.coupons
        ]  # fmt: skip
        if page.next_after is None:
            break
        after = page.next_after
    print_grid(f"{tenant_name} coupons", ["code", "name", "terms", "redeem by", "applied"], rows, keep=("code",))


def _on(discount: Discount) -> str:
    """The discount's target, short: `cus_1` or `cus_1 sub 4`."""
    return discount.customer + ("" if discount.subscription_id is None else f" sub {discount.subscription_id}")


def _target(discount: Discount) -> str:
    if discount.subscription_id is None:
        return f"customer {discount.customer}"
    return f"subscription {discount.subscription_id} ({discount.customer})"


@coupon.command("apply")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("code")
@click.option("--customer", default=None, help="Customer external id: every subscription of it.")
@click.option("--subscription", "subscription_id", type=int, default=None, help="Subscription id: only its lines.")
@click.option("--at", "at_text", default=None, help="When the discount starts (ISO 8601) [default: now].")
@click.pass_context
def coupon_apply(
    ctx: click.Context, tenant_name: str, code: str, customer: str | None, subscription_id: int | None,
    at_text: str | None,
) -> None:  # fmt: skip
    """Apply coupon CODE to a customer or one subscription: a discount on their invoices, before tax."""
    from datetime import UTC, datetime

    from invoicing.catalog import apply_coupon

    if (customer is None) == (subscription_id is None):
        raise click.UsageError("give --customer or --subscription, exactly one of them")
    starts = None if at_text is None else instant_or_now(at_text)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    d = apply_coupon(
        engine, tenant_id, code, datetime.now(UTC), customer=customer, subscription_id=subscription_id,
        starts_at=starts,
    )  # fmt: skip
    click.echo(f"applied {code} to {_target(d)} as discount {d.id}: {d.coupon.terms}, from {utc_minute(d.starts_at)}")


@coupon.command("remove")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("discount_id", type=int)
@click.pass_context
def coupon_remove(ctx: click.Context, tenant_name: str, discount_id: int) -> None:
    """End discount DISCOUNT_ID now; invoices already issued keep their discount lines."""
    from datetime import UTC, datetime

    from invoicing.catalog import remove_discount

    engine, tenant_id = open_tenant(ctx, tenant_name)
    d = remove_discount(engine, tenant_id, discount_id, datetime.now(UTC))
    click.echo(f"removed discount {d.id} ({d.coupon.code} on {_target(d)}) at {utc_minute(d.removed_at)}")


@coupon.command("discounts")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--customer", default=None, help="Only this customer's (its subscriptions' included).")
@click.option("--subscription", "subscription_id", type=int, default=None, help="Only this subscription's.")
@click.option("--all", "include_removed", is_flag=True, help="Include removed discounts.")
@click.pass_context
def coupon_discounts(
    ctx: click.Context, tenant_name: str, customer: str | None, subscription_id: int | None, include_removed: bool
) -> None:
    """TENANT's discounts by id, with the periods they used and have left."""
    from datetime import UTC, datetime

    from invoicing.catalog import list_discounts

    engine, tenant_id = open_tenant(ctx, tenant_name)
    now = datetime.now(UTC)
    rows: list[list[str]] = []
    after: int | None = None
    while True:
        page = list_discounts(
            engine, tenant_id, customer=customer, subscription_id=subscription_id,
            include_removed=include_removed, after=after, limit=500,
        )  # fmt: skip
        rows += [
            [str(d.id), d.coupon.code, _on(d), d.status(now), utc_minute(d.starts_at), utc_minute(d.removed_at),
             f"{d.periods_used} of " + ("no limit" if d.coupon.period_limit is None else str(d.coupon.period_limit))]
            for d in page.discounts
        ]  # fmt: skip
        if page.next_after is None:
            break
        after = page.next_after
    print_grid(
        f"{tenant_name} discounts",
        ["id", "coupon", "on", "status", "starts", "removed", "periods used"],
        rows,
        keep=("id", "status"),
    )
