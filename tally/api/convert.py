"""Domain objects as BillingService messages, shared by every part of the API that returns them.

One converter per domain type, so a Customer, Meter, PlanVersion or Subscription looks the same in
every response that carries it (GetCustomer, Customer360, ...). Decimals go out as plain-notation
strings and unset optional values as empty strings or unset fields, never as "None".
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import ValidationError
from sqlalchemy import Engine

from invoicing.catalog import Address, Customer, FeatureDefinition, PlanSummary, PlanVersion, get_plan_version_by_id
from invoicing.subscriptions import Subscription
from metering.errors import InvalidArgument
from metering.meter import Meter
from metering.usage import UsageRow
from tally.api.base import decimal_str, timestamp
from tally.v1 import billing_pb2 as pb


def validation_error(exc: ValidationError, prefix: str) -> InvalidArgument:
    """A pydantic error as INVALID_ARGUMENT naming each field by its request path (`customer.currency: ...`)."""
    parts = []
    for e in exc.errors():
        path = prefix
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = e["msg"].removeprefix("Value error, ")  # pydantic's wrapper around our own ValueErrors
        parts.append(f"{path}: {message}")
    return InvalidArgument("; ".join(parts) or f"{prefix}: invalid")


def address_pb(address: Address | None) -> pb.Address | None:
    """None for no address; an all-empty address carries nothing either, so it is left unset too."""
    if address is None or address == Address():
        return None
    return pb.Address(
        line1=address.line1,
        line2=address.line2,
        city=address.city,
        region=address.region,
        postal_code=address.postal_code,
        country=address.country,
    )


def customer_pb(c: Customer) -> pb.Customer:
    return pb.Customer(
        external_id=c.external_id,
        name=c.name,
        currency=c.currency,
        timezone=c.timezone,
        address=address_pb(c.address),
        tax_region=c.tax_region,
        email=c.email,
        metadata=c.metadata,
        created_at=timestamp(c.created_at),
        tax_id=c.tax_id,
        invoice_grouping=c.invoice_grouping or "",
    )


def meter_pb(m: Meter) -> pb.Meter:
    return pb.Meter(
        code=m.code,
        name=m.name,
        aggregation=m.aggregation.value,
        value_scale=m.value_scale,
        unit=m.unit,
        filter={k: pb.StringList(values=v) for k, v in (m.filter or {}).items()},
        group_by=list(m.group_by),
        unique_property=m.unique_property or "",
        time_unit=m.time_unit.value if m.time_unit is not None else "",
    )


def feature_pb(f: FeatureDefinition) -> pb.Feature:
    return pb.Feature(
        key=f.key,
        kind=f.kind,
        meter=f.meter or "",
        amount="" if f.amount is None else decimal_str(f.amount),
        unit=f.unit or "",
    )


def plan_version_pb(v: PlanVersion) -> pb.PlanVersion:
    return pb.PlanVersion(
        code=v.code,
        version=v.version,
        status=v.status.value,
        name=v.name,
        currency=v.currency,
        interval=v.interval.value,
        trial_days=v.trial_days,
        definition_json=json.dumps(v.definition().model_dump(mode="json"), separators=(",", ":")),
        features=[feature_pb(f) for f in v.features],
        created_at=timestamp(v.created_at),
        published_at=timestamp(v.published_at),
    )


def plan_summary_pb(s: PlanSummary) -> pb.PlanSummary:
    return pb.PlanSummary(
        code=s.code,
        name=s.name,
        latest_version=s.latest_version,
        latest_status=s.latest_status.value,
        published_version=s.published_version or 0,
    )


class PlanRefs:
    """(code, version) of plan version ids, loaded once each: a page of subscriptions shares a few versions."""

    def __init__(self, engine: Engine, tenant_id: int) -> None:
        self._engine = engine
        self._tenant_id = tenant_id
        self._known: dict[int, tuple[str, int]] = {}

    def __call__(self, version_id: int) -> tuple[str, int]:
        found = self._known.get(version_id)
        if found is None:
            v = get_plan_version_by_id(self._engine, self._tenant_id, version_id)
            found = self._known[version_id] = (v.code, v.version)
        return found


def subscription_pb(sub: Subscription, plans: PlanRefs) -> pb.Subscription:
    code, version = plans(sub.plan_version_id)
    pending_code, pending_version = ("", 0)
    if sub.pending_plan_version_id is not None:
        pending_code, pending_version = plans(sub.pending_plan_version_id)
    return pb.Subscription(
        id=sub.id,
        customer=sub.customer_external_id,
        plan=code,
        plan_version=version,
        state=sub.state.value,
        billing_anchor=timestamp(sub.billing_anchor),
        started_at=timestamp(sub.started_at),
        trial_ends_at=timestamp(sub.trial_ends_at),
        ends_at=timestamp(sub.ends_at),
        pending_plan=pending_code,
        pending_plan_version=pending_version,
        pending_change_at=timestamp(sub.pending_change_at if sub.pending_plan_version_id is not None else None),
    )


def subscriptions_pb(engine: Engine, tenant_id: int, subs: Iterable[Subscription]) -> list[pb.Subscription]:
    plans = PlanRefs(engine, tenant_id)
    return [subscription_pb(s, plans) for s in subs]


def usage_row_pb(row: UsageRow) -> pb.UsageRow:
    return pb.UsageRow(
        window_start=timestamp(row.window_start),
        group=row.group,
        quantity=decimal_str(row.quantity),
        events=row.events,
    )


__all__ = [
    "PlanRefs",
    "address_pb",
    "customer_pb",
    "feature_pb",
    "meter_pb",
    "plan_summary_pb",
    "plan_version_pb",
    "subscription_pb",
    "subscriptions_pb",
    "usage_row_pb",
    "validation_error",
]
