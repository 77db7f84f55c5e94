"""`tally plan`: create, edit, publish, list and show plans (JSON files; see docs/billing.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tally.cli._common import open_tenant, print_table

if TYPE_CHECKING:
    from invoicing.catalog import PlanVersion


def _load(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"plan file {file}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "see docs/billing.md for the plan format"
        ) from None
    except UnicodeDecodeError:
        raise click.ClickException(f"plan file {file}: not UTF-8 text; save it as UTF-8") from None


def _save(file: Path, save: Callable[[Any], PlanVersion]) -> PlanVersion:
    """Save the plan in FILE; a refused plan is one line naming the file and every problem, by field path."""
    from invoicing.catalog import InvalidPlan

    try:
        return save(_load(file))
    except InvalidPlan as exc:
        problems = "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in exc.problems)
        raise click.ClickException(f"plan file {file}: {problems}") from None


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

    engine, tenant_id = open_tenant(ctx, tenant_name)
    v = _save(file, lambda definition: create_plan(engine, tenant_id, definition, datetime.now(UTC)))
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

    engine, tenant_id = open_tenant(ctx, tenant_name)
    v = _save(file, lambda definition: edit_plan(engine, tenant_id, definition, datetime.now(UTC)))
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

    engine, tenant_id = open_tenant(ctx, tenant_name)
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

    engine, tenant_id = open_tenant(ctx, tenant_name)
    rows = [
        [p.code, p.name, f"v{p.latest_version} ({p.latest_status.value})",
         "-" if p.published_version is None else f"v{p.published_version}"]
        for p in list_plans(engine, tenant_id)
    ]  # fmt: skip
    print_table("plans", ["code", "name", "latest", "published"], rows)


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

    engine, tenant_id = open_tenant(ctx, tenant_name)
    _plan_table(get_plan_version(engine, tenant_id, code, version))


def _plan_table(v: PlanVersion) -> None:
    title = f"{v.label} ({v.status.value}) · {v.name} · {v.currency} · {v.interval.value} · trial {v.trial_days} days"
    rows = [
        [c.code, c.kind, c.meter or "", c.group_by or "", c.billing,
         json.dumps(c.price_definition, sort_keys=True, separators=(",", ":"))]
        for c in v.charges
    ]  # fmt: skip
    print_table(title, ["charge", "kind", "meter", "group by", "billing", "price"], rows)
