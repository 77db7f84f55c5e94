"""SimulatePlan: a past window's stored usage re-priced under a candidate plan (rules in
`invoicing.insight._simulation` and docs/insight.md).

The work is bounded by the domain (a window of at most 366 days, customers rated in batches, the request's
budget checked between them); the response is bounded here: at most `limit` customer rows (1,000), with the
totals, the per-plan sums and the distribution always over every customer. `tally simulate --csv` writes
them all.
"""

from __future__ import annotations

from decimal import Decimal

from invoicing.insight import CustomerChange, PlanTotal, Simulation, simulate_plan
from metering.errors import InvalidArgument
from metering.tenant import Principal
from tally.api.base import READ, ApiBase, client_json, decimal_arg, decimal_str, instant, page_size, rpc, timestamp
from tally.v1 import billing_pb2 as pb


def amounts(x: CustomerChange | PlanTotal | Simulation) -> dict[str, str]:
    """The current, simulated, difference and pct fields every level of the answer carries."""
    pct = x.pct
    return {
        "current": decimal_str(x.current),
        "simulated": decimal_str(x.simulated),
        "difference": decimal_str(x.difference),
        "pct": "" if pct is None else decimal_str(pct),
    }


def customer_pb(c: CustomerChange) -> pb.SimulatedCustomer:
    return pb.SimulatedCustomer(customer=c.customer, plan=c.plan, **amounts(c))


class SimulationRpcs(ApiBase):
    @rpc(READ)
    def SimulatePlan(self, principal: Principal, request: pb.SimulatePlanRequest) -> pb.SimulatePlanResponse:
        if bool(request.plan_json) == bool(request.plan):
            raise InvalidArgument(
                'give the candidate as exactly one of plan_json (a plan definition) and plan ("CODE@VERSION")'
            )
        candidate = client_json(request.plan_json, "plan_json", self.limits) if request.plan_json else request.plan
        if request.plan_json and not isinstance(candidate, dict):
            raise InvalidArgument("plan_json must be a JSON object (a plan definition, as CreatePlan takes)")
        start = instant(request, "start")
        end = instant(request, "end")
        if start is None or end is None:
            raise InvalidArgument("start and end are required: the window to re-price (at most 366 days)")
        threshold = decimal_arg(request.more_than_pct, "more_than_pct", allow_empty=True)
        limit = page_size(request.limit, "limit")
        sim = simulate_plan(
            self.engine, principal.tenant_id, candidate, start, end,
            plan_code=request.current_plan or None, threshold_pct=Decimal(0) if threshold is None else threshold,
        )  # fmt: skip
        return pb.SimulatePlanResponse(
            candidate=sim.candidate,
            currency=sim.currency,
            start=timestamp(sim.start),
            end=timestamp(sim.end),
            plans=[pb.SimulatedPlanTotal(plan=p.plan, customers=p.customers, **amounts(p)) for p in sim.plans],
            current=decimal_str(sim.current),
            simulated=decimal_str(sim.simulated),
            difference=decimal_str(sim.difference),
            distribution=[pb.ChangeBucket(label=b.label, customers=b.customers) for b in sim.distribution],
            more_than=[customer_pb(c) for c in sim.more_than[:limit]],
            more_than_total=len(sim.more_than),
            customers=[customer_pb(c) for c in sim.customers[:limit]],
            customers_total=len(sim.customers),
        )
