"""BillingService: the domain mixins composed into one servicer, and its background workers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from metering.tenant import KeyStore
from tally.api.base import ApiBase, ChangeListener, Worker
from tally.api.catalog import CatalogRpcs
from tally.api.coupons import CouponRpcs
from tally.api.customers import CustomerRpcs
from tally.api.disputes import DisputeRpcs
from tally.api.entitlements import EntitlementRpcs
from tally.api.events import EventRpcs
from tally.api.ingest import IngestServicer
from tally.api.insight import InsightRpcs
from tally.api.invoices import InvoiceRpcs
from tally.api.leakage import LeakageRpcs
from tally.api.payments import PaymentRpcs
from tally.api.points import PointsRpcs
from tally.api.portal import PortalRpcs
from tally.api.profile import ProfileRpcs
from tally.api.simulation import SimulationRpcs
from tally.api.subscriptions import SubscriptionRpcs
from tally.api.wallets import WalletRpcs
from tally.settings import Settings
from tally.v1 import billing_pb2_grpc


class BillingServicer(
    CustomerRpcs,
    CatalogRpcs,
    SubscriptionRpcs,
    InvoiceRpcs,
    PaymentRpcs,
    ProfileRpcs,
    WalletRpcs,
    PointsRpcs,
    EventRpcs,
    EntitlementRpcs,
    InsightRpcs,
    SimulationRpcs,
    LeakageRpcs,
    CouponRpcs,
    DisputeRpcs,
    PortalRpcs,
    billing_pb2_grpc.BillingServiceServicer,
):
    """Every RPC of `tally.v1.BillingService`; each mixin's module documents its part."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyStore,
        ingest: IngestServicer | None = None,
        threads: int = 8,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.engine = engine
        self.limits = self.settings.api
        self.keys = keys
        self.ingest = ingest
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="billing-api")
        self.listeners: list[ChangeListener] = []
        self.workers: list[Worker] = [*self.setup_entitlements(), *self.setup_events(), *self.setup_points()]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def drain(self) -> None:
        """Before the gRPC server stops: end open WatchEvents streams so shutdown need not wait for them."""
        self.close_watches()

    def stop(self) -> None:
        for worker in reversed(self.workers):
            worker.stop()
        self.executor.shutdown(wait=True, cancel_futures=False)


def scopes() -> dict[str, str]:
    """Each BillingService method and the scope it requires ("" when not implemented)."""
    from tally.v1 import billing_pb2

    service = billing_pb2.DESCRIPTOR.services_by_name["BillingService"]
    return {m.name: getattr(getattr(BillingServicer, m.name), "tally_scope", "") for m in service.methods}


__all__ = ["ApiBase", "BillingServicer", "scopes"]
