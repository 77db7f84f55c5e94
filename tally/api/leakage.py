"""GetRevenueLeakage: counted usage of a window that no invoice will bill (rules in
`invoicing.insight._leakage` and docs/insight.md). The window is bounded by the domain (366 days); the
rows by `limit` (1,000), while the categories always count everything."""

from __future__ import annotations

from invoicing.insight import leakage_report
from metering.errors import InvalidArgument
from metering.tenant import Principal
from tally.api.base import READ, ApiBase, decimal_str, instant, page_size, rpc, timestamp
from tally.v1 import billing_pb2 as pb


class LeakageRpcs(ApiBase):
    @rpc(READ)
    def GetRevenueLeakage(self, principal: Principal, request: pb.GetRevenueLeakageRequest) -> pb.RevenueLeakage:
        start = instant(request, "start")
        end = instant(request, "end")
        if start is None or end is None:
            raise InvalidArgument("start and end are required: the window to look at (at most 366 days)")
        limit = page_size(request.limit, "limit")
        report = leakage_report(self.engine, principal.tenant_id, start, end)
        return pb.RevenueLeakage(
            start=timestamp(report.start),
            end=timestamp(report.end),
            categories=[
                pb.LeakageCategory(category=c.category, events=c.events, customers=c.customers, meters=list(c.meters))
                for c in report.categories
            ],
            rows=[
                pb.LeakageRow(
                    category=r.category,
                    customer=r.customer,
                    meter=r.meter,
                    events=r.events,
                    quantity="" if r.quantity is None else decimal_str(r.quantity),
                )
                for r in report.rows[:limit]
            ],
            rows_total=len(report.rows),
            unbilled_events=report.events,
            counted_events=report.counted_events,
        )
