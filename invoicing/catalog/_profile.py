"""The tenant's billing profile: the seller named on its documents, and how its documents are issued.

One row per tenant (`billing_profiles`), absent until the tenant first sets it: readers then get
`BillingProfile()`, whose seller fields are empty (documents fall back to the tenant's name) and whose
preferences are the defaults: net 30, zero-total documents not issued, one document per customer,
billing date and currency.

Why the checks are here and strict: the profile is printed on documents sent to customers and read by
the invoice run, so a bad value would surface far from where it was entered (a PDF that cannot be set,
a run grouping by an unknown key). The logo is kept in the database, not on a disk the API servers may
not share, and is bounded (256 KiB) because every PDF export reads it; it is checked by its magic bytes
and decoded once here so a damaged file is refused when it is uploaded, not when an invoice is sent.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from invoicing.catalog._customer import Address
from invoicing.catalog._period import stored_utc, utc
from invoicing.tables import billing_profiles
from metering.errors import InvalidArgument
from metering.transactions import begin_write

#: How documents are grouped: one per customer, billing date and currency, or one per subscription.
GROUPINGS = ("customer", "subscription")
LEGAL_NAME_MAX = 256
TAX_ID_MAX = 64
PAYMENT_INSTRUCTIONS_MAX = 2000
PAYMENT_TERMS_MAX_DAYS = 365
LOGO_MAX_BYTES = 256 * 1024
#: Magic bytes of the image formats a PDF can embed without conversion.
LOGO_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}


@dataclass(frozen=True, slots=True)
class BillingProfile:
    """The seller and the document preferences; every field has a default, so a tenant that never set a
    profile reads as `BillingProfile()`."""

    legal_name: str = ""
    address: Address | None = None
    tax_id: str = ""
    payment_instructions: str = ""
    payment_terms_days: int = 30
    logo: bytes | None = None  # PNG or JPEG bytes
    issue_zero_total: bool = False
    invoice_grouping: str = "customer"  # one of GROUPINGS
    updated_at: datetime | None = None  # None until stored

    @property
    def logo_type(self) -> str | None:
        """The image format by the logo's magic bytes ("png" or "jpeg"), None without a logo."""
        return None if not self.logo else logo_type(self.logo)

    @property
    def terms(self) -> str:
        """The payment terms as printed: "Due on receipt" for 0 days, else "Net N"."""
        return "Due on receipt" if self.payment_terms_days == 0 else f"Net {self.payment_terms_days}"


#: The fields `set_billing_profile` accepts as changes (updated_at is the store's).
FIELDS = tuple(f.name for f in fields(BillingProfile) if f.name != "updated_at")


def logo_type(data: bytes) -> str | None:
    for kind, magic in LOGO_MAGIC.items():
        if data.startswith(magic):
            return kind
    return None


def _text(name: str, value: object, limit: int, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidArgument(f"{name} is {len(value)} characters; shorten it to at most {limit}")
    allowed = value.replace("\n", "").replace("\t", "") if multiline else value
    if not allowed.isprintable():
        bad = next(ch for ch in allowed if not ch.isprintable())
        what = "control characters (line breaks are fine)" if multiline else "line breaks and control characters"
        raise InvalidArgument(f"{name} contains {bad!r}: remove {what}")
    return value


def _address(value: object) -> Address | None:
    if value is None or isinstance(value, Address):
        return None if value == Address() else value
    if not isinstance(value, Mapping):
        raise InvalidArgument("address must be an object with line1, line2, city, region, postal_code, country")
    try:
        address = Address.model_validate(dict(value))
    except ValidationError as exc:
        problems = "; ".join(
            f"address.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise InvalidArgument(problems or "address: invalid") from None
    return None if address == Address() else address


def _logo(value: object) -> bytes | None:
    if value is None or value == b"":
        return None
    if not isinstance(value, bytes | bytearray):
        raise InvalidArgument(f"logo must be the bytes of a PNG or JPEG file, got {type(value).__name__}")
    data = bytes(value)
    if len(data) > LOGO_MAX_BYTES:
        raise InvalidArgument(
            f"logo is {len(data):,} bytes; at most {LOGO_MAX_BYTES:,} (256 KiB): scale it down or compress it"
        )
    kind = logo_type(data)
    if kind is None:
        raise InvalidArgument("logo is not a PNG or JPEG file (by its first bytes); export it as PNG or JPEG")
    from PIL import Image  # fpdf2's own image reader: what decodes here will embed

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as exc:  # Pillow raises many types for damaged files
        raise InvalidArgument(f"logo looks like {kind.upper()} but cannot be read ({exc}); save it again") from None
    return data


def _terms(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"payment_terms_days must be a whole number of days, got {value!r}")
    if not 0 <= value <= PAYMENT_TERMS_MAX_DAYS:
        raise InvalidArgument(f"payment_terms_days is {value}; use 0 (due on receipt) to {PAYMENT_TERMS_MAX_DAYS} days")
    return value


def _grouping(value: object) -> str:
    if value not in GROUPINGS:
        raise InvalidArgument(
            f"invoice_grouping {value!r}: use 'customer' (one document per customer, billing date and currency) "
            "or 'subscription' (one per subscription)"
        )
    return str(value)


def validate_profile(profile: BillingProfile) -> BillingProfile:
    """The profile with every field checked (InvalidArgument naming the first bad field and the fix)."""
    if not isinstance(profile.issue_zero_total, bool):
        raise InvalidArgument(f"issue_zero_total must be true or false, got {profile.issue_zero_total!r}")
    return replace(
        profile,
        legal_name=_text("legal_name", profile.legal_name, LEGAL_NAME_MAX).strip(),
        address=_address(profile.address),
        tax_id=_text("tax_id", profile.tax_id, TAX_ID_MAX).strip(),
        payment_instructions=_text(
            "payment_instructions", profile.payment_instructions, PAYMENT_INSTRUCTIONS_MAX, multiline=True
        ).strip(),
        payment_terms_days=_terms(profile.payment_terms_days),
        logo=_logo(profile.logo),
        invoice_grouping=_grouping(profile.invoice_grouping),
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _profile(r: Any) -> BillingProfile:
    return BillingProfile(
        legal_name=r.legal_name,
        address=None if r.address is None else Address.model_validate(json.loads(r.address)),
        tax_id=r.tax_id,
        payment_instructions=r.payment_instructions,
        payment_terms_days=int(r.payment_terms_days),
        logo=None if r.logo is None else bytes(r.logo),
        issue_zero_total=bool(r.issue_zero_total),
        invoice_grouping=r.invoice_grouping,
        updated_at=stored_utc(r.updated_at),
    )


def get_billing_profile(conn: Connection | Engine, tenant_id: int) -> BillingProfile:
    """The tenant's profile, or `BillingProfile()` if it never set one. Takes a connection so the invoice
    run can read it inside its own transaction; an engine opens one."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return get_billing_profile(c, tenant_id)
    row = conn.execute(select(billing_profiles).where(billing_profiles.c.tenant_id == tenant_id)).one_or_none()
    return BillingProfile() if row is None else _profile(row)


def set_billing_profile(
    engine: Engine, tenant_id: int, profile_or_changes: BillingProfile | Mapping[str, Any], now: datetime
) -> BillingProfile:
    """Store the tenant's profile and return it as stored.

    A `BillingProfile` replaces the whole profile; a mapping of field → value changes only those fields
    (an empty address or empty logo bytes clear them). Unknown field names are refused so a typo never
    silently changes nothing."""
    at = utc(now)
    for attempt in (1, 2):
        try:
            with begin_write(engine) as conn:
                current = get_billing_profile(conn, tenant_id)
                checked = validate_profile(_wanted(current, profile_or_changes))
                values = {
                    "legal_name": checked.legal_name,
                    "address": None if checked.address is None else _dumps(checked.address.model_dump()),
                    "tax_id": checked.tax_id,
                    "payment_instructions": checked.payment_instructions,
                    "payment_terms_days": checked.payment_terms_days,
                    "logo": checked.logo,
                    "issue_zero_total": checked.issue_zero_total,
                    "invoice_grouping": checked.invoice_grouping,
                    "updated_at": at,
                }
                if current.updated_at is None:
                    conn.execute(insert(billing_profiles).values(tenant_id=tenant_id, created_at=at, **values))
                else:
                    conn.execute(
                        update(billing_profiles).where(billing_profiles.c.tenant_id == tenant_id).values(**values)
                    )
                return get_billing_profile(conn, tenant_id)
        except IntegrityError:
            # Two first writes raced (PostgreSQL): the row exists now, so the second try updates it.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _wanted(current: BillingProfile, profile_or_changes: BillingProfile | Mapping[str, Any]) -> BillingProfile:
    if isinstance(profile_or_changes, BillingProfile):
        return profile_or_changes
    unknown = sorted(set(profile_or_changes) - set(FIELDS))
    if unknown:
        raise InvalidArgument(f"unknown billing profile field {unknown[0]!r}; use {', '.join(FIELDS)}")
    return replace(current, **dict(profile_or_changes))


__all__ = [
    "FIELDS",
    "GROUPINGS",
    "LOGO_MAX_BYTES",
    "PAYMENT_INSTRUCTIONS_MAX",
    "PAYMENT_TERMS_MAX_DAYS",
    "BillingProfile",
    "get_billing_profile",
    "logo_type",
    "set_billing_profile",
    "validate_profile",
]
