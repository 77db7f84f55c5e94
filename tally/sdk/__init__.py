"""The Python SDK: `IngestClient` / `AsyncIngestClient` stream usage to `IngestService`; `BillingClient` has
one typed method per `BillingService` RPC. Import from here; `_ingest` and `_billing` are private (the
billing client borrows the ingest client's channel options, never the other way round).
"""

from tally.sdk._billing import (
    SIGNATURE_HEADER,
    BillingClient,
    TallyApiError,
    decimal_text,
    invoice_filter,
    plain_json,
    transfer,
    verify_signature,
)
from tally.sdk._ingest import (
    MESSAGE_BYTES_MAX,
    AsyncIngestClient,
    BatchResult,
    IngestClient,
    IngestError,
    IngestSummary,
    RejectedEvent,
    UsageEvent,
    encode_batch,
    ingest_batch,
)

__all__ = [
    "MESSAGE_BYTES_MAX",
    "SIGNATURE_HEADER",
    "AsyncIngestClient",
    "BatchResult",
    "BillingClient",
    "IngestClient",
    "IngestError",
    "IngestSummary",
    "RejectedEvent",
    "TallyApiError",
    "UsageEvent",
    "decimal_text",
    "encode_batch",
    "ingest_batch",
    "invoice_filter",
    "plain_json",
    "transfer",
    "verify_signature",
]
