"""The tenant's billing profile: the seller on its documents (GetBillingProfile, UpdateBillingProfile).

Like UpdateCustomer, an update says what it changes with `update_mask`: proto3 cannot tell 0 from
unset, and 0 payment-terms days ("due on receipt") or `issue_zero_total = false` are real values.
Every value is checked by the domain (`invoicing.catalog.set_billing_profile`), whose messages name
the field; the edge only adds the request path (`profile.`) so a client knows which field to fix.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from invoicing.catalog import Address, BillingProfile, get_billing_profile, set_billing_profile
from metering.errors import InvalidArgument
from metering.tenant import Principal
from tally.api.base import ADMIN, READ, ApiBase, now, rpc, timestamp
from tally.api.convert import address_pb, validation_error
from tally.v1 import billing_pb2 as pb

#: The fields UpdateBillingProfile can change, as named in `update_mask`.
UPDATABLE = (
    "legal_name",
    "address",
    "tax_id",
    "payment_instructions",
    "payment_terms_days",
    "logo",
    "issue_zero_total",
    "invoice_grouping",
)


def profile_pb(p: BillingProfile, *, logo: bool = True) -> pb.BillingProfile:
    return pb.BillingProfile(
        legal_name=p.legal_name,
        address=address_pb(p.address),
        tax_id=p.tax_id,
        payment_instructions=p.payment_instructions,
        payment_terms_days=p.payment_terms_days,
        logo=(p.logo or b"") if logo else b"",
        logo_type=p.logo_type or "",
        issue_zero_total=p.issue_zero_total,
        invoice_grouping=p.invoice_grouping,
        updated_at=timestamp(p.updated_at),
    )


def _address(message: pb.BillingProfile) -> Address:
    """Unset clears the address (an all-empty address is stored as none)."""
    if not message.HasField("address"):
        return Address()
    a = message.address
    try:
        return Address(
            line1=a.line1, line2=a.line2, city=a.city, region=a.region, postal_code=a.postal_code, country=a.country
        )
    except ValidationError as exc:
        raise validation_error(exc, "profile.address") from None


def _changes(request: pb.UpdateBillingProfileRequest) -> dict[str, Any]:
    if not request.update_mask:
        raise InvalidArgument(f"update_mask is empty: list the fields to change ({', '.join(UPDATABLE)})")
    message = request.profile
    changes: dict[str, Any] = {}
    for i, name in enumerate(request.update_mask):
        if name not in UPDATABLE:
            raise InvalidArgument(
                f"update_mask[{i}]: {name!r} is not a field that can change; use {', '.join(UPDATABLE)}"
            )
        changes[name] = _address(message) if name == "address" else getattr(message, name)
    return changes


class ProfileRpcs(ApiBase):
    @rpc(READ)
    def GetBillingProfile(self, principal: Principal, request: pb.GetBillingProfileRequest) -> pb.BillingProfile:
        return profile_pb(get_billing_profile(self.engine, principal.tenant_id), logo=not request.omit_logo)

    @rpc(ADMIN)
    def UpdateBillingProfile(self, principal: Principal, request: pb.UpdateBillingProfileRequest) -> pb.BillingProfile:
        changes = _changes(request)
        try:
            stored = set_billing_profile(self.engine, principal.tenant_id, changes, now())
        except InvalidArgument as exc:  # the domain names the field; the client sent it inside `profile`
            raise InvalidArgument(f"profile.{exc}") from None
        return profile_pb(stored)


__all__ = ["UPDATABLE", "ProfileRpcs", "profile_pb"]
