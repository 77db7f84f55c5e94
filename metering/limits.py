"""Every bound on ingest, named with its unit. Each one is a setting (`TALLY_INGEST__<NAME>`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class IngestLimits(BaseModel):
    """Declared maxima: nothing in the ingest path grows without one of these bounding it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_events_max: int = Field(10_000, ge=1, le=1_000_000, description="events in one EventBatch")
    message_bytes_max: int = Field(4 * 1024 * 1024, ge=1024, description="bytes of one gRPC message")
    stream_inflight_batches_max: int = Field(
        8, ge=1, le=1024, description="batches of one stream read but not yet acked"
    )
    queue_events_max: int = Field(
        200_000, ge=1, description="events validated and waiting for the writer, over all streams"
    )
    queue_wait_ms_max: int = Field(
        2_000, ge=0, description="how long a batch waits for queue room before RESOURCE_EXHAUSTED"
    )
    queue_delay_ms_max: int = Field(
        1_000,
        ge=1,
        description="how long batches may stand in the queue before a writer takes them (the least wait over "
        "the last 100 ms: a queue that does not drain); beyond it new batches get RESOURCE_EXHAUSTED at once, "
        "so latency under overload stays flat instead of growing with the queue",
    )
    retry_after_ms: int = Field(200, ge=1, description="retry hint sent with RESOURCE_EXHAUSTED")
    commit_events_max: int = Field(
        50_000, ge=1, description="events grouped into one commit by the writer (group commit)"
    )
    event_age_max_days: int = Field(35, ge=0, description="oldest accepted event timestamp, days ago")
    event_future_max_s: int = Field(300, ge=0, description="newest accepted event timestamp, seconds ahead")
    event_id_bytes_max: int = Field(128, ge=1, le=1024)
    customer_bytes_max: int = Field(256, ge=1, le=256)  # the width of every customer column
    property_key_bytes_max: int = Field(64, ge=1, le=256)
    property_value_bytes_max: int = Field(256, ge=1, le=4096)
    properties_max: int = Field(32, ge=0, le=256, description="properties on one event")
    value_chars_max: int = Field(40, ge=1, le=64, description="characters of a decimal value string")
    stream_buffered_bytes_max: int = Field(
        4 * 1024 * 1024, ge=1024, description="bytes of batches one stream has read but not yet acked"
    )


class ApiLimits(BaseModel):
    """What one BillingService request may cost. Each is a setting (`TALLY_API__<NAME>`); a request that
    would exceed one is refused up front with the limit named, and work that still runs long stops at
    `request_seconds_max` or at the client's own deadline, whichever comes first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_seconds_max: float = Field(
        30.0, gt=0, le=3600, description="work of one unary request (or one page of a stream) before it is stopped"
    )
    usage_windows_max: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="windows (hours, days or months) one QueryUsage may span, and rows it may return "
        "(windows × dimension values when grouped)",
    )
    usage_buckets_max: int = Field(
        2_000_000,
        ge=1,
        description="15-minute rollup rows one usage query may read, plus for a gauge one per window of "
        "each series it integrates",
    )
    simulate_points_max: int = Field(
        1_000_000, ge=1, description="SimulatePrice: quantities × (tiers + 1) priced in one call"
    )
    streams_per_key_max: int = Field(
        64, ge=1, le=10_000, description="open streams (Ingest, WatchEvents) of one API key at once"
    )
    streams_max: int = Field(256, ge=1, description="open streams of all keys at once")
    json_bytes_max: int = Field(1024 * 1024, ge=1024, description="bytes of one JSON document in a request")
    json_depth_max: int = Field(32, ge=2, le=256, description="nesting of objects and arrays in request JSON")
