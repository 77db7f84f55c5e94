"""Coupons and discounts: create and list coupons, apply one to a customer or subscription, list and
remove discounts.

Proto3 cannot tell an empty string or a 0 from an unset one, so "" and 0 mean "not given" where that
reading is the only sensible one: a percent coupon has no amount, a once coupon no periods, 0 is no
limit of applications. Percent and amount are exact decimal strings, parsed by the project's one decimal
parser; every rule of a coupon is checked by the domain (`invoicing.catalog.create_coupon`), whose
errors name the field, here prefixed with the request path (`coupon.percent: ...`).
"""

from __future__ import annotations

from invoicing.catalog import LIST_LIMIT_MAX as DOMAIN_PAGE_MAX
from invoicing.catalog import (
    Coupon,
    CouponDefinition,
    Discount,
    InvalidCoupon,
    apply_coupon,
    create_coupon,
    list_coupons,
    list_discounts,
    remove_discount,
)
from metering.errors import InvalidArgument
from metering.tenant import Principal
from tally.api.base import (
    ADMIN,
    ID_MAX,
    READ,
    ApiBase,
    decimal_str,
    encode_token,
    gather_pages,
    instant,
    int_token,
    now,
    page_size,
    positive_id,
    required,
    rpc,
    str_token,
    timestamp,
)
from tally.v1 import billing_pb2 as pb


def coupon_pb(c: Coupon) -> pb.Coupon:
    return pb.Coupon(
        code=c.code,
        name=c.name,
        kind=c.kind,
        percent="" if c.percent is None else decimal_str(c.percent),
        amount="" if c.amount_decimal is None else decimal_str(c.amount_decimal),
        currency=c.currency or "",
        duration=c.duration,
        periods=c.periods or 0,
        applies_to=list(c.applies_to or ()),
        redeem_by=timestamp(c.redeem_by),
        max_redemptions=c.max_redemptions or 0,
        times_applied=c.times_applied,
        created_at=timestamp(c.created_at),
    )


def discount_pb(d: Discount) -> pb.Discount:
    message = pb.Discount(
        id=d.id,
        coupon=d.coupon.code,
        customer=d.customer,
        subscription_id=d.subscription_id or 0,
        starts_at=timestamp(d.starts_at),
        removed_at=timestamp(d.removed_at),
        periods_used=d.periods_used,
        status=d.status(now()),
        terms=d.coupon.terms,
        created_at=timestamp(d.created_at),
    )
    if d.periods_remaining is not None:
        message.periods_remaining = d.periods_remaining
    return message


def _definition(message: pb.Coupon) -> CouponDefinition:
    """The coupon asked for; the domain checks every rule (decimals, currency, periods, codes)."""
    if not 0 <= message.max_redemptions <= ID_MAX:
        raise InvalidArgument(f"coupon.max_redemptions must be 0 (no limit) to {ID_MAX}, got {message.max_redemptions}")
    try:
        redeem_by = instant(message, "redeem_by")
    except InvalidArgument as exc:
        raise InvalidArgument(f"coupon.{exc}") from None
    return CouponDefinition(
        code=required(message.code, "coupon.code"),
        kind=required(message.kind, "coupon.kind"),
        duration=message.duration or "once",
        name=message.name,
        percent=message.percent or None,
        amount=message.amount or None,
        currency=message.currency or None,
        periods=message.periods or None,
        applies_to=list(message.applies_to) or None,
        redeem_by=redeem_by,
        max_redemptions=message.max_redemptions or None,
    )


class CouponRpcs(ApiBase):
    @rpc(ADMIN)
    def CreateCoupon(self, principal: Principal, request: pb.CreateCouponRequest) -> pb.Coupon:
        try:
            definition = _definition(request.coupon)
            return coupon_pb(create_coupon(self.engine, principal.tenant_id, definition, now()))
        except InvalidCoupon as exc:
            raise InvalidArgument(f"coupon.{exc.field}: {exc.reason}") from None

    @rpc(READ)
    def ListCoupons(self, principal: Principal, request: pb.ListCouponsRequest) -> pb.ListCouponsResponse:
        def fetch(after: str | None, limit: int) -> tuple[list[pb.Coupon], str | None]:
            page = list_coupons(self.engine, principal.tenant_id, after, limit)
            return [coupon_pb(c) for c in page.coupons], page.next_after

        out, more = gather_pages(fetch, str_token(request.page_token), page_size(request.page_size), DOMAIN_PAGE_MAX)
        token = encode_token(out[-1].code) if more and out else ""
        return pb.ListCouponsResponse(coupons=out, next_page_token=token)

    @rpc(ADMIN)
    def ApplyCoupon(self, principal: Principal, request: pb.ApplyCouponRequest) -> pb.Discount:
        code = required(request.coupon, "coupon")
        if bool(request.customer) == bool(request.subscription_id):
            raise InvalidArgument(
                "give customer (its external id: every subscription of it) or subscription_id (one "
                "subscription), exactly one of them"
            )
        sub_id = positive_id(request.subscription_id, "subscription_id") if request.subscription_id else None
        discount = apply_coupon(
            self.engine, principal.tenant_id, code, now(), customer=request.customer or None,
            subscription_id=sub_id, starts_at=instant(request, "starts_at"),
        )  # fmt: skip
        return discount_pb(discount)

    @rpc(READ)
    def ListDiscounts(self, principal: Principal, request: pb.ListDiscountsRequest) -> pb.ListDiscountsResponse:
        sub_id = positive_id(request.subscription_id, "subscription_id") if request.subscription_id else None

        def fetch(after: int | None, limit: int) -> tuple[list[pb.Discount], int | None]:
            page = list_discounts(
                self.engine, principal.tenant_id, customer=request.customer or None, subscription_id=sub_id,
                include_removed=request.include_removed, at=now(), after=after, limit=limit,
            )  # fmt: skip
            return [discount_pb(d) for d in page.discounts], page.next_after

        out, more = gather_pages(fetch, int_token(request.page_token), page_size(request.page_size), DOMAIN_PAGE_MAX)
        token = encode_token(out[-1].id) if more and out else ""
        return pb.ListDiscountsResponse(discounts=out, next_page_token=token)

    @rpc(ADMIN)
    def RemoveDiscount(self, principal: Principal, request: pb.RemoveDiscountRequest) -> pb.Discount:
        discount_id = positive_id(request.id, "id")
        return discount_pb(remove_discount(self.engine, principal.tenant_id, discount_id, now()))


__all__ = ["CouponRpcs", "coupon_pb", "discount_pb"]
