"""Customer 360 and the tenant's portfolio (rules in `invoicing.insight._customer360` and docs/entitlements.md)."""

from __future__ import annotations

from invoicing.insight import Amount, InvoiceRef, customer_360, portfolio
from metering.tenant import Principal
from tally.api.base import READ, ApiBase, decimal_str, now, required, rpc, timestamp
from tally.api.convert import customer_pb, subscriptions_pb
from tally.v1 import billing_pb2 as pb


def _amount(a: Amount) -> pb.UnitAmount:
    return pb.UnitAmount(unit=a.unit, amount=decimal_str(a.amount))


def _summary(i: InvoiceRef) -> pb.InvoiceSummary:
    return pb.InvoiceSummary(
        id=i.id,
        label=i.label,
        status=i.status,
        kind=i.kind,
        total=decimal_str(i.total),
        currency=i.currency,
        due_at=timestamp(i.due_at),
    )


class InsightRpcs(ApiBase):
    @rpc(READ)
    def GetCustomer360(self, principal: Principal, request: pb.GetCustomer360Request) -> pb.Customer360:
        external_id = required(request.external_id, "external_id")
        c = customer_360(self.engine, principal.tenant_id, external_id, now())
        return pb.Customer360(
            customer=customer_pb(c.customer),
            stage=c.stage.name,
            stage_reason=c.stage.reason,
            subscriptions=subscriptions_pb(self.engine, principal.tenant_id, c.subscriptions),
            period_start=timestamp(c.period.start if c.period else None),
            period_end=timestamp(c.period.end if c.period else None),
            usage=[
                pb.MeterUsage(
                    meter=u.meter,
                    quantity=decimal_str(u.quantity),
                    unit=u.unit,
                    previous_quantity=decimal_str(u.previous),
                )
                for u in c.usage
            ],
            spend_so_far=_amount(c.spend),
            balances=[
                pb.UnitBalance(
                    unit=h.unit,
                    balance=decimal_str(h.balance),
                    available=decimal_str(h.available),
                    pending_in=decimal_str(h.pending_in),
                )
                for h in c.balances
            ],
            open_invoices=[_summary(i) for i in c.open_invoices],
            past_invoices=[_summary(i) for i in c.past_invoices],
            sla=[
                pb.SlaStatus(
                    charge=s.charge,
                    meter=s.meter,
                    measured="" if s.measured is None else decimal_str(s.measured),
                    credit=decimal_str(s.credit),
                    status=s.status,
                )
                for s in c.sla
            ],
        )

    @rpc(READ)
    def GetPortfolio(self, principal: Principal, request: pb.GetPortfolioRequest) -> pb.Portfolio:
        p = portfolio(self.engine, principal.tenant_id, now())
        return pb.Portfolio(
            stages=[
                pb.PortfolioStage(
                    stage=s.stage,
                    customers=s.customers,
                    revenue=[_amount(a) for a in s.revenue],
                    sample_customers=s.sample,
                )
                for s in p.stages
            ],
            customers=p.customers,
        )
