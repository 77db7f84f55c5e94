"""The finance views: overview, revenue, receivables ageing, portfolio by lifecycle stage and the moves
between stages, SLA credits, price simulation, customers and the customer 360.

Figures come from `invoicing.insight` (the functions GetPortfolio, GetCustomer360 and SimulatePlan call,
and the finance reports of `invoicing.insight._finance`) and are charted as they are, exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from invoicing.catalog import get_plan_version_by_id, list_customers, list_plans
from invoicing.insight import (
    AGEING_BUCKETS,
    NOT_YET,
    STAGES,
    customer_360,
    list_runs,
    portfolio,
    receivables_ageing,
    revenue_report,
    simulate_plan,
    sla_credits,
)
from metering.errors import InvalidArgument
from tally.console._app import PAGE_SIZE, PREFIX, Console, Page, money
from tally.console._charts import Chart, Series, bar_chart, line_chart, stacked_bar_chart
from tally.console._dates import add_months, month_start, parse_day, parse_month

#: Windows offered on the portfolio's "moved since" control, in days.
MOVE_WINDOWS = (7, 30, 90)
MONTHS_MAX = 36
#: The portfolio page reuses a tenant's portfolio this long (it is as of the instant it was computed).
PORTFOLIO_TTL_S = 60.0


def _fmt(currency: str) -> Callable[[Decimal], str]:
    return lambda v: money(v, currency)


def _plain(v: Decimal) -> str:
    return money(v)


def _window(ctx: Page, default_months: int) -> tuple[datetime, datetime, str, str]:
    """[start, end) from the `from` and `to` months of the query (to inclusive); default the last months."""
    now = datetime.now(UTC)
    start_text, end_text = ctx.query("from", max_chars=7), ctx.query("to", max_chars=7)
    end = add_months(parse_month(end_text, "to"), 1) if end_text else add_months(month_start(now), 1)
    start = parse_month(start_text, "from") if start_text else add_months(end, -default_months)
    if start >= end:
        raise InvalidArgument("from: the first month must not be after the last")
    if (end.year - start.year) * 12 + end.month - start.month > MONTHS_MAX:
        raise InvalidArgument(f"at most {MONTHS_MAX} months at once")
    return start, end, start.strftime("%Y-%m"), add_months(end, -1).strftime("%Y-%m")


def revenue_charts(report: Any) -> dict[str, list[Chart]]:
    """Over time (area per currency), by plan (bars per currency), by plan over time (stacked), by currency."""
    over, by_plan, stacked = [], [], []
    for ccy in report.currencies:
        fmt = _fmt(ccy)
        values = [report.by_month.get((m, ccy), Decimal(0)) for m in report.months]
        over.append(
            line_chart(f"Revenue per month, {ccy}", report.months, [Series(ccy, values)], fmt, area=True, head="Month")
        )
        plans = [p for (p, c) in report.by_plan if c == ccy]
        labels = [p or "(no plan)" for p in plans]
        by_plan.append(
            bar_chart(
                f"Revenue by plan, {ccy}",
                labels,
                [Series(ccy, [report.by_plan[(p, ccy)] for p in plans])],
                fmt,
                head="Plan",
            )
        )
        if len(plans) > 1:
            stacked.append(plan_month_chart(report, ccy, report.months))
    if report.currencies:
        by_currency = bar_chart(
            "Revenue by currency (each in its own currency, not converted)",
            report.currencies,
            [Series("Revenue", [report.by_currency[c] for c in report.currencies])],
            _plain,
            head="Currency",
        )
        return {"over": over, "by_plan": by_plan, "stacked": stacked, "by_currency": [by_currency]}
    return {"over": over, "by_plan": by_plan, "stacked": stacked, "by_currency": []}


def plan_month_chart(report: Any, ccy: str, months: list[str]) -> Chart:
    """Revenue per month stacked by plan (the plan's share of each month)."""
    plans = [p for (p, c) in report.by_plan if c == ccy]
    return stacked_bar_chart(
        f"Revenue per month by plan, {ccy}",
        months,
        [Series(p or "(no plan)", [report.by_month_plan.get((m, p, ccy), Decimal(0)) for m in months]) for p in plans],
        _fmt(ccy),
        head="Month",
    )


class _Recent:
    """Portfolios by (tenant, days), each reused for `ttl_s`: the stage of every customer is recomputed from
    usage at most that often, so the page stays fast on a large tenant (it says as of when)."""

    def __init__(self, ttl_s: float = PORTFOLIO_TTL_S, size: int = 256) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._kept: dict[tuple[int, int], tuple[float, Any]] = {}

    async def get(self, ctx: Page, days: int) -> Any:
        key = (ctx.tenant_id, days)
        hit = self._kept.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        now = datetime.now(UTC)
        found = await ctx.run(portfolio, ctx.engine, ctx.tenant_id, now, now - timedelta(days=days))
        if len(self._kept) >= self.size:
            self._kept.pop(next(iter(self._kept)))
        self._kept[key] = (time.monotonic(), found)
        return found


def report_routes(console: Console) -> list[BaseRoute]:
    portfolios = _Recent()
    for label, path in (
        ("Revenue", "revenue"),
        ("Receivables", "receivables"),
        ("Portfolio", "portfolio"),
        ("Customers", "customers"),
        ("SLA credits", "sla"),
        ("Price simulation", "simulation"),
    ):
        console.add_nav(label, f"{PREFIX}/{path}")

    async def overview(ctx: Page) -> Response:
        now = datetime.now(UTC)
        this_month = month_start(now)
        report = await ctx.run(
            revenue_report, ctx.engine, ctx.tenant_id, add_months(this_month, -11), add_months(this_month, 1)
        )
        ageing = await ctx.run(receivables_ageing, ctx.engine, ctx.tenant_id, now, 5)
        runs = await ctx.run(list_runs, ctx.engine, ctx.tenant_id, 1)
        month, last = this_month.strftime("%Y-%m"), add_months(this_month, -1).strftime("%Y-%m")
        return ctx.render(
            "overview.html",
            report=report,
            ageing=ageing,
            last_run=runs[0] if runs else None,
            this_month=month,
            last_month=last,
            charts=revenue_charts(report)["over"],
        )

    async def revenue(ctx: Page) -> Response:
        start, end, first, last = _window(ctx, 12)
        report = await ctx.run(revenue_report, ctx.engine, ctx.tenant_id, start, end)
        return ctx.render("revenue.html", report=report, charts=revenue_charts(report), first=first, last=last)

    async def receivables(ctx: Page) -> Response:
        ageing = await ctx.run(receivables_ageing, ctx.engine, ctx.tenant_id, datetime.now(UTC), 50)
        labels = [b[0] for b in AGEING_BUCKETS]
        charts = [
            bar_chart(
                f"Receivables by days past due, {ccy}",
                [f"{x} days" if x != "current" else "not yet due" for x in labels],
                [Series(ccy, [b.amount for b in ageing.buckets[ccy]])],
                _fmt(ccy),
                head="Past due",
            )
            for ccy in ageing.currencies
        ]
        return ctx.render("receivables.html", ageing=ageing, charts=charts)

    async def portfolio_page(ctx: Page) -> Response:
        days_text = ctx.query("since", "30", max_chars=4)
        if not days_text.isdigit() or int(days_text) not in MOVE_WINDOWS:
            raise InvalidArgument(f"since: one of {', '.join(map(str, MOVE_WINDOWS))} days")
        days = int(days_text)
        p = await portfolios.get(ctx, days)
        moves = p.moves
        names = [s.stage.replace("_", " ") for s in p.stages]
        charts = [
            bar_chart(
                "Customers by lifecycle stage",
                names,
                [Series("Customers", [Decimal(s.customers) for s in p.stages])],
                _count,
                head="Stage",
            )
        ]
        currencies = sorted({a.unit for s in p.stages for a in s.revenue})
        for ccy in currencies:
            values = [next((a.amount for a in s.revenue if a.unit == ccy), Decimal(0)) for s in p.stages]
            charts.append(
                bar_chart(
                    f"Revenue of the last 30 days by stage, {ccy}",
                    names,
                    [Series(ccy, values)],
                    _fmt(ccy),
                    head="Stage",
                )
            )
        return ctx.render(
            "portfolio.html",
            portfolio=p,
            moves=moves,
            at=moves.at,
            charts=charts,
            days=days,
            windows=MOVE_WINDOWS,
            not_yet=NOT_YET,
            stages=STAGES,
        )

    async def sla(ctx: Page) -> Response:
        start, end, first, last = _window(ctx, 3)
        found = await ctx.run(sla_credits, ctx.engine, ctx.tenant_id, start, end, 200)
        charts = []
        for ccy in sorted(found.totals):
            charges = [c for (c, k) in found.by_charge if k == ccy]
            charts.append(
                bar_chart(
                    f"SLA credits by charge, {ccy}",
                    charges,
                    [Series(ccy, [found.by_charge[(c, ccy)] for c in charges])],
                    _fmt(ccy),
                    head="Charge",
                )
            )
        return ctx.render("sla.html", found=found, charts=charts, first=first, last=last)

    async def simulation(ctx: Page) -> Response:
        plans = await ctx.run(list_plans, ctx.engine, ctx.tenant_id)
        candidate = ctx.query("candidate", max_chars=80)
        current = ctx.query("current", max_chars=64)
        now = datetime.now(UTC)
        default_start, default_end = add_months(month_start(now), -1), month_start(now)
        start_text, end_text = ctx.query("start", max_chars=10), ctx.query("end", max_chars=10)
        start = parse_day(start_text, "from") if start_text else default_start
        end = parse_day(end_text, "to") + timedelta(days=1) if end_text else default_end
        form = {
            "candidate": candidate,
            "current": current,
            "start": start.strftime("%Y-%m-%d"),
            "end": (end - timedelta(days=1)).strftime("%Y-%m-%d"),
        }
        options = [f"{p.code}@{v}" for p in plans for v in range(1, p.latest_version + 1)]
        if not candidate:
            return ctx.render("simulation.html", sim=None, form=form, options=options, plans=plans, charts=[])
        sim = await ctx.run(
            simulate_plan,
            ctx.engine,
            ctx.tenant_id,
            candidate,
            start,
            end,
            plan_code=current or None,
            threshold_pct=Decimal(0),
        )
        fmt = _fmt(sim.currency)
        labels = [p.plan for p in sim.plans]
        charts = [
            bar_chart(
                f"Current and simulated amounts by current plan, {sim.currency}",
                labels,
                [
                    Series("current", [p.current for p in sim.plans]),
                    Series(f"under {sim.candidate}", [p.simulated for p in sim.plans]),
                ],
                fmt,
                head="Plan",
            ),
            bar_chart(
                "Customers by change in what they pay",
                [b.label for b in sim.distribution],
                [Series("Customers", [Decimal(b.customers) for b in sim.distribution])],
                _count,
                head="Change",
            ),
        ]
        biggest = sorted(sim.customers, key=lambda c: (-abs(c.difference_minor), c.customer))[:PAGE_SIZE]
        return ctx.render(
            "simulation.html", sim=sim, form=form, options=options, plans=plans, charts=charts, biggest=biggest
        )

    async def customers(ctx: Page) -> Response:
        after = ctx.query("after", max_chars=256) or None
        q = ctx.query("q", max_chars=256)
        if q:
            return ctx.redirect(f"{PREFIX}/customers/{_quote(q)}")
        page = await ctx.run(list_customers, ctx.engine, ctx.tenant_id, after, PAGE_SIZE)
        next_url = "" if page.next_after is None else f"?after={_quote(page.next_after)}"
        return ctx.render(
            "customers.html", page=page, next_url=next_url, first_url=f"{PREFIX}/customers" if after else ""
        )

    async def customer(ctx: Page) -> Response:
        external_id = str(ctx.request.path_params["external_id"])
        if len(external_id) > 256:
            raise InvalidArgument("customer: at most 256 characters")
        c = await ctx.run(customer_360, ctx.engine, ctx.tenant_id, external_id, datetime.now(UTC))
        labels = {}
        for s in c.subscriptions:
            if s.plan_version_id not in labels:
                v = await ctx.run(get_plan_version_by_id, ctx.engine, ctx.tenant_id, s.plan_version_id)
                labels[s.plan_version_id] = v.label
        charts = [
            bar_chart(
                f"{u.meter}: this period so far and the same stretch before",
                ["previous period", "this period"],
                [Series(u.meter, [u.previous, u.quantity])],
                _unit(u.unit),
                head="Period",
            )
            for u in c.usage
        ]
        return ctx.render("customer.html", c=c, plan_labels=labels, charts=charts)

    return [
        Route(f"{PREFIX}/", console.page(overview), methods=["GET"]),
        Route(f"{PREFIX}/revenue", console.page(revenue), methods=["GET"]),
        Route(f"{PREFIX}/receivables", console.page(receivables), methods=["GET"]),
        Route(f"{PREFIX}/portfolio", console.page(portfolio_page), methods=["GET"]),
        Route(f"{PREFIX}/sla", console.page(sla), methods=["GET"]),
        Route(f"{PREFIX}/simulation", console.page(simulation), methods=["GET"]),
        Route(f"{PREFIX}/customers", console.page(customers), methods=["GET"]),
        Route(f"{PREFIX}/customers/{{external_id:path}}", console.page(customer), methods=["GET"]),
    ]


def _unit(unit: str) -> Callable[[Decimal], str]:
    return lambda v: f"{money(v)} {unit}".strip()


def _count(v: Decimal) -> str:
    return money(v)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


__all__ = ["report_routes", "revenue_charts"]
