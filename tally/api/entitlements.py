"""Entitlements: CheckEntitlement and ListEntitlements, answered from memory.

The cache (`invoicing.insight._entitlement.EntitlementCache`) lives as long as the servicer. Three things keep
it current: `self.changed(...)` from the subscription and wallet RPCs reloads a customer at once, the
IngestService's commit hook adds committed usage before the ingest is acked, and a refresher thread
reloads snapshots older than a few seconds for changes made elsewhere (CLI, another server).
"""

from __future__ import annotations

from invoicing.insight import Decision, EntitlementCache, Refresher
from metering.tenant import Principal
from tally.api.base import INGEST_OR_READ, ApiBase, Worker, decimal_arg, decimal_str, required, rpc, timestamp
from tally.v1 import billing_pb2 as pb


def entitlement_pb(d: Decision) -> pb.Entitlement:
    return pb.Entitlement(
        feature=d.feature,
        allowed=d.allowed,
        kind=d.kind,
        granted="" if d.granted is None else decimal_str(d.granted),
        used="" if d.used is None else decimal_str(d.used),
        remaining="" if d.remaining is None else decimal_str(d.remaining),
        reason=d.reason,
        resets_at=timestamp(d.resets_at),
    )


class EntitlementRpcs(ApiBase):
    entitlements: EntitlementCache

    def setup_entitlements(self) -> list[Worker]:
        """The cache, its change listener and ingest hook, and the refresher Worker."""
        self.entitlements = EntitlementCache(self.engine)
        self.listeners.append(self.entitlements.invalidate)
        ingest = getattr(self, "ingest", None)
        if ingest is not None:
            ingest.commit_hook = self.entitlements
        return [Refresher(self.entitlements)]

    @rpc(INGEST_OR_READ)
    def CheckEntitlement(self, principal: Principal, request: pb.CheckEntitlementRequest) -> pb.Entitlement:
        customer = required(request.customer, "customer")
        feature = required(request.feature, "feature")
        requested = decimal_arg(request.requested, "requested", allow_empty=True, positive=True)
        return entitlement_pb(self.entitlements.check(principal.tenant_id, customer, feature, requested))

    @rpc(INGEST_OR_READ)
    def ListEntitlements(
        self, principal: Principal, request: pb.ListEntitlementsRequest
    ) -> pb.ListEntitlementsResponse:
        customer = required(request.customer, "customer")
        decisions = self.entitlements.entitlements(principal.tenant_id, customer)
        return pb.ListEntitlementsResponse(entitlements=[entitlement_pb(d) for d in decisions])
