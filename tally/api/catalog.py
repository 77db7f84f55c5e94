"""Meters, plans and price simulation.

CreatePlan is one call for both "new plan" and "edit plan": integrators keep a plan's definition in
their own repository and send it whenever it changes, so the API decides whether that creates the plan
(draft v1), replaces the open draft, or opens draft N+1 after a published version. Publishing is a
separate, explicit step because a published version is immutable and starts billing subscribers.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from pydantic import BaseModel, ValidationError

from invoicing.catalog import (
    InvalidPlan,
    create_plan,
    edit_plan,
    get_plan_version,
    list_plan_versions,
    list_plans,
    publish_plan,
)
from metering.deadline import checkpoint
from metering.errors import AlreadyExists, InvalidArgument, NotFound
from metering.limits import ApiLimits
from metering.meter import MeterDefinition, create_meter, get_meter, list_meters
from metering.tenant import Principal
from rating.errors import InvalidPriceError, RatingError
from rating.price import parse_price
from rating.quoting import quote
from rating.rounding import RoundingMode
from tally.api.base import (
    ADMIN,
    READ,
    ApiBase,
    client_json,
    decimal_arg,
    decimal_str,
    encode_token,
    now,
    page_size,
    required,
    rpc,
    str_token,
)
from tally.api.convert import meter_pb, plan_summary_pb, plan_version_pb, validation_error
from tally.v1 import billing_pb2 as pb

#: SimulatePrice prices at most this many quantities per call (each is an exact Decimal quote).
SIMULATE_QUANTITIES_MAX = 10_000
#: Characters of one SimulatePrice quantity (as IngestLimits.value_chars_max for event values).
QUANTITY_CHARS_MAX = 40


def _tier_count(node: object) -> int:
    """The tiers of every tiered model in a price, nested prices included (a dimensional price's values,
    a commitment's or points price's inner price): what pricing one quantity may walk."""
    if isinstance(node, BaseModel):
        return sum(_tier_count(getattr(node, name)) for name in type(node).model_fields)
    if isinstance(node, tuple | list):
        return sum(1 + _tier_count(item) for item in node if isinstance(item, BaseModel))
    if isinstance(node, dict):
        return sum(_tier_count(value) for value in node.values())
    return 0


def _code_token(token: str, rpc_name: str) -> str | None:
    """The last code of the previous page (lists keyed by a code)."""
    return str_token(token)


def _page(codes: list[str], after: str | None, size: int) -> tuple[slice, str]:
    """The slice of sorted `codes` after the cursor, and the next page's token ("" on the last page)."""
    start = 0 if after is None else bisect_right(codes, after)
    stop = start + size
    return slice(start, stop), encode_token(codes[stop - 1]) if stop < len(codes) else ""


def _meter_definition(message: pb.Meter) -> MeterDefinition:
    values: dict[str, Any] = {
        "code": required(message.code, "meter.code"),
        "name": message.name,
        "value_scale": message.value_scale,
        "unit": message.unit,
        "filter": {k: list(v.values) for k, v in message.filter.items()},
        "group_by": list(message.group_by),
    }
    if message.aggregation:
        values["aggregation"] = message.aggregation
    if message.unique_property:
        values["unique_property"] = message.unique_property
    if message.time_unit:
        values["time_unit"] = message.time_unit
    try:
        return MeterDefinition(**values)
    except ValidationError as exc:
        raise validation_error(exc, "meter") from None


def _plan_definition(text: str, limits: ApiLimits) -> dict[str, Any]:
    raw = client_json(required(text, "definition_json"), "definition_json", limits)
    if not isinstance(raw, dict):
        raise InvalidArgument("definition_json: a plan definition is a JSON object with code, currency, charges, ...")
    return raw


def _invalid_plan(exc: InvalidPlan) -> InvalidArgument:
    """Every problem, each with its path inside definition_json."""
    return InvalidArgument("definition_json: invalid plan: " + "; ".join(str(p) for p in exc.problems))


class CatalogRpcs(ApiBase):
    # --- meters ------------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def CreateMeter(self, principal: Principal, request: pb.CreateMeterRequest) -> pb.Meter:
        definition = _meter_definition(request.meter)
        return meter_pb(create_meter(self.engine, principal.tenant_id, definition))

    @rpc(READ)
    def GetMeter(self, principal: Principal, request: pb.GetMeterRequest) -> pb.Meter:
        return meter_pb(get_meter(self.engine, principal.tenant_id, required(request.code, "code")))

    @rpc(READ)
    def ListMeters(self, principal: Principal, request: pb.ListMetersRequest) -> pb.ListMetersResponse:
        size = page_size(request.page_size)
        after = _code_token(request.page_token, "ListMeters")
        # Sorted here, not by the database's collation, so the order is the cursor's `>` (a tenant has few meters).
        meters = sorted(list_meters(self.engine, principal.tenant_id), key=lambda m: m.code)
        window, token = _page([m.code for m in meters], after, size)
        return pb.ListMetersResponse(meters=[meter_pb(m) for m in meters[window]], next_page_token=token)

    # --- plans -------------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def CreatePlan(self, principal: Principal, request: pb.CreatePlanRequest) -> pb.PlanVersion:
        raw = _plan_definition(request.definition_json, self.limits)
        try:
            try:
                version = create_plan(self.engine, principal.tenant_id, raw, now())
            except AlreadyExists:
                version = edit_plan(self.engine, principal.tenant_id, raw, now())
        except InvalidPlan as exc:
            raise _invalid_plan(exc) from None
        return plan_version_pb(version)

    @rpc(ADMIN)
    def PublishPlan(self, principal: Principal, request: pb.PublishPlanRequest) -> pb.PlanVersion:
        code = required(request.code, "code")
        try:
            return plan_version_pb(publish_plan(self.engine, principal.tenant_id, code, now()))
        except InvalidPlan as exc:  # meters the draft names do not exist (yet)
            raise InvalidArgument(
                f"plan {code!r} cannot be published: " + "; ".join(str(p) for p in exc.problems)
            ) from None

    @rpc(READ)
    def GetPlan(self, principal: Principal, request: pb.GetPlanRequest) -> pb.PlanVersion:
        code = required(request.code, "code")
        if request.version < 0:
            raise InvalidArgument(
                f"version must be 0 (the latest published) or a version number, got {request.version}"
            )
        if request.version:
            return plan_version_pb(get_plan_version(self.engine, principal.tenant_id, code, request.version))
        try:
            return plan_version_pb(get_plan_version(self.engine, principal.tenant_id, code, published=True))
        except NotFound:
            latest = get_plan_version(self.engine, principal.tenant_id, code)  # NotFound when no such plan
            raise NotFound(
                f"plan {code!r} has no published version yet (v{latest.version} is a draft); publish it with "
                f"PublishPlan, or ask for version {latest.version} to see the draft"
            ) from None

    @rpc(READ)
    def ListPlans(self, principal: Principal, request: pb.ListPlansRequest) -> pb.ListPlansResponse:
        size = page_size(request.page_size)
        after = _code_token(request.page_token, "ListPlans")
        plans = sorted(list_plans(self.engine, principal.tenant_id), key=lambda p: p.code)  # as ListMeters
        window, token = _page([p.code for p in plans], after, size)
        return pb.ListPlansResponse(plans=[plan_summary_pb(p) for p in plans[window]], next_page_token=token)

    @rpc(READ)
    def ListPlanVersions(
        self, principal: Principal, request: pb.ListPlanVersionsRequest
    ) -> pb.ListPlanVersionsResponse:
        versions = list_plan_versions(self.engine, principal.tenant_id, required(request.code, "code"))
        return pb.ListPlanVersionsResponse(versions=[plan_version_pb(v) for v in versions])

    # --- pricing -----------------------------------------------------------------------------------------------
    @rpc(READ)
    def SimulatePrice(self, principal: Principal, request: pb.SimulatePriceRequest) -> pb.SimulatePriceResponse:
        try:
            price = parse_price(client_json(required(request.price_json, "price_json"), "price_json", self.limits))
        except InvalidPriceError as exc:
            raise InvalidArgument(f"price_json: {exc}") from None
        if not request.quantities:
            raise InvalidArgument("quantities: give at least one quantity to price")
        if len(request.quantities) > SIMULATE_QUANTITIES_MAX:
            raise InvalidArgument(
                f"quantities: at most {SIMULATE_QUANTITIES_MAX:,} per call, got {len(request.quantities):,}; "
                "split them over several calls"
            )
        for i, text in enumerate(request.quantities):
            if len(text) > QUANTITY_CHARS_MAX:
                raise InvalidArgument(f"quantities[{i}]: at most {QUANTITY_CHARS_MAX} characters, got {len(text):,}")
        tiers = _tier_count(price)
        points = len(request.quantities) * (tiers + 1)
        if points > self.limits.simulate_points_max:
            raise InvalidArgument(
                f"SimulatePrice would price {len(request.quantities):,} quantities × ({tiers:,} tiers + 1) = "
                f"{points:,} points; the limit is simulate_points_max={self.limits.simulate_points_max}: "
                "send fewer quantities per call"
            )
        mode = getattr(price, "rounding", RoundingMode.HALF_EVEN)
        results = []
        for i, text in enumerate(request.quantities):
            checkpoint()
            field = f"quantities[{i}]"
            quantity = decimal_arg(text, field)
            try:
                q = quote(price, quantity)
                rounded = q.rounded(mode).amount
            except RatingError as exc:
                raise InvalidArgument(f"{field}: {exc}") from None
            results.append(
                pb.PricedQuantity(quantity=text, amount=decimal_str(rounded), amount_exact=decimal_str(q.amount))
            )
        return pb.SimulatePriceResponse(results=results, currency=price.unit().code)


__all__ = ["QUANTITY_CHARS_MAX", "SIMULATE_QUANTITIES_MAX", "CatalogRpcs"]
