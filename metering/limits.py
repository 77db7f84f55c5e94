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
