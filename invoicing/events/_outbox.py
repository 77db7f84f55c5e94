"""The outbox: domain events written in the same transaction as the change that causes them.

A change and its event commit together or not at all, so a consumer (`WatchEvents`, webhooks) never
hears of an invoice that was rolled back, and never misses one that was written.

Ordering: each tenant has one `outbox_heads` row. `emit` bumps it with an upsert that returns the
new head, which locks the row until the writing transaction ends. Two writers of one tenant
therefore take sequences one after the other and commit in that order, so per tenant the sequence
is gapless and equal to commit order: a reader that saw sequence N has seen every event before N.
The lock is held from `emit` to commit, so emitters call it last in their transaction (an invoice
batch emits once for the whole batch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from invoicing.platform_tables import outbox_events, outbox_heads
from metering.errors import InvalidArgument

#: Every event type Tally emits; `data` schemas are in docs/api.md.
EVENT_TYPES = (
    "invoice.created",
    "invoice.updated",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_recorded",
    "invoice.voided",
    "invoice.uncollectible",
    "credit_note.created",
    "dispute.opened",
    "dispute.resolved",
    "wallet.balance_low",
    "grant.expired",
    "points.earned",
    "usage.threshold_crossed",
    "spend.threshold_crossed",
    "usage.unbilled",
    "subscription.created",
    "subscription.plan_changed",
    "subscription.change_scheduled",
    "subscription.paused",
    "subscription.resumed",
    "subscription.cancelled",
    "subscription.trial_ended",
    "subscription.end_scheduled",
    "subscription.schedule_withdrawn",
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    customer: str  # external id, "" for none
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DomainEvent:
    tenant_id: int
    sequence: int
    type: str
    customer: str
    data: dict[str, Any]
    occurred_at: datetime


#: One encoder for every event (json.dumps with options builds a new one per call).
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def emit(conn: Connection, tenant_id: int, events: Sequence[NewEvent], at: datetime | None = None) -> list[int]:
    """Append events to the tenant's stream inside the caller's transaction; returns their sequences.

    Call it as the last write of the transaction: it holds the tenant's head row until commit.
    """
    if not events:
        return []
    for e in events:
        if e.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {e.type!r}")  # a programming error, not user input
    n = len(events)
    dialect = conn.dialect.name
    ins: Any = pg_insert(outbox_heads) if dialect == "postgresql" else sqlite_insert(outbox_heads)
    upsert = ins.values(tenant_id=tenant_id, last_sequence=n).on_conflict_do_update(
        index_elements=[outbox_heads.c.tenant_id],
        set_={"last_sequence": outbox_heads.c.last_sequence + n},
    )
    last = int(conn.execute(upsert.returning(outbox_heads.c.last_sequence)).scalar_one())
    first = last - n + 1
    when = at or datetime.now(UTC)
    # One driver-level executemany: the instant goes through the column's bind processor once, not per row.
    process = outbox_events.c.occurred_at.type.bind_processor(conn.dialect)
    stamp = process(when) if process is not None else when
    mark = "?" if dialect == "sqlite" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO {outbox_events.name} (tenant_id, sequence, type, customer, data, occurred_at) "
        f"VALUES ({', '.join([mark] * 6)})",
        [(tenant_id, first + k, e.type, e.customer, _dumps(e.data), stamp) for k, e in enumerate(events)],
    )
    return list(range(first, last + 1))


def matches(event_type: str, patterns: Sequence[str]) -> bool:
    """A type filter: exact types or prefixes ending in '.' ("invoice."); empty matches all."""
    return not patterns or any(event_type == p or (p.endswith(".") and event_type.startswith(p)) for p in patterns)


def check_patterns(patterns: Sequence[str], field: str = "types") -> list[str]:
    out = []
    for i, p in enumerate(patterns):
        if not (p in EVENT_TYPES or (p.endswith(".") and any(t.startswith(p) for t in EVENT_TYPES))):
            raise InvalidArgument(
                f"{field}[{i}]: {p!r} is not an event type or a prefix like 'invoice.'; types: {', '.join(EVENT_TYPES)}"
            )
        out.append(p)
    return out


def read_events(
    engine: Engine | Connection,
    tenant_id: int,
    after_sequence: int,
    limit: int = 100,
    types: Sequence[str] = (),
) -> tuple[list[DomainEvent], int]:
    """Events with sequence > after_sequence, in order; returns them and the last sequence read.

    The last sequence read covers events skipped by the type filter, so a filtered cursor advances.
    """
    o = outbox_events.c
    query = (
        select(o.sequence, o.type, o.customer, o.data, o.occurred_at)
        .where(o.tenant_id == tenant_id, o.sequence > after_sequence)
        .order_by(o.sequence)
        .limit(limit)
    )
    if isinstance(engine, Connection):
        rows = engine.execute(query).all()
    else:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    last = rows[-1].sequence if rows else after_sequence
    out = [
        DomainEvent(tenant_id, r.sequence, r.type, r.customer, json.loads(r.data), _aware(r.occurred_at))
        for r in rows
        if matches(r.type, types)
    ]
    return out, int(last)


def head(engine: Engine, tenant_id: int) -> int:
    """The tenant's last committed sequence (0 before any event)."""
    with engine.connect() as conn:
        value = conn.execute(
            select(outbox_heads.c.last_sequence).where(outbox_heads.c.tenant_id == tenant_id)
        ).scalar_one_or_none()
    return int(value or 0)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


__all__ = ["EVENT_TYPES", "DomainEvent", "NewEvent", "check_patterns", "emit", "head", "matches", "read_events"]
