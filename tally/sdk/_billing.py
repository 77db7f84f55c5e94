"""Python SDK for Tally's BillingService: one typed method per RPC, exact values, one error type.

Why it is shaped this way:

- Every RPC of `proto/tally/v1/billing.proto` has a snake_case method here (a test walks the service
  descriptor), so the SDK cannot fall behind the contract. Methods return the protobuf messages
  themselves: they are typed (`tally/v1/billing_pb2.pyi`) and carry every field the server sends.
- Money and quantities travel as decimal strings. Arguments accept `Decimal`, `int` or a decimal
  `str`; a `float` is a TypeError, because `0.1` is not the number the caller wrote and billing must not
  round by accident. Plan and price definitions given as mappings are checked the same way.
- Every failure is a `TallyApiError(code, message)`: callers handle one exception type, and the
  message is the server's own (it names the field and what to do).
- The channel is built with the ingest clients' settings (`tally.sdk._ingest`), so both reconnect to a
  restarted server at the same pace.
- `iter_*` helpers follow page tokens, so a caller never handles cursors by hand.
- `verify_signature` is `invoicing.events._webhook`'s: a webhook receiver checks the `Tally-Signature`
  header with the same code that signs it (imported on first use, so importing the SDK, or the
  ingest client that re-exports it, does not load SQLAlchemy and HTTP machinery).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Self

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from tally.v1 import billing_pb2 as pb
from tally.v1 import billing_pb2_grpc as pb_grpc

__all__ = [
    "SIGNATURE_HEADER",
    "BillingClient",
    "Number",
    "TallyApiError",
    "decimal_text",
    "plain_json",
    "transfer",
    "verify_signature",
]

#: What a money or quantity argument may be: exact values only.
Number = Decimal | int | str
DateArg = datetime | None

_PAGE_SIZE: Final = 500
#: The HTTP header carrying a webhook's signature (invoicing.events._webhook.SIGNATURE_HEADER).
SIGNATURE_HEADER: Final = "Tally-Signature"


class TallyApiError(Exception):
    """A BillingService call failed: `code` is the gRPC status, `message` the server's explanation."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc_error(cls, exc: grpc.RpcError) -> TallyApiError:
        if isinstance(exc, grpc.Call):
            return cls(exc.code(), exc.details() or "")
        return cls(grpc.StatusCode.UNKNOWN, str(exc))


def verify_signature(
    secret: str, header: str, body: bytes | str, now: datetime | float, tolerance_s: int = 300
) -> bool:
    """True when `header` (a `Tally-Signature` value) signs exactly the raw `body` with the endpoint's
    `secret`, within `tolerance_s` of `now` (either way, so a captured request cannot be replayed later).

    The same check as the server's `invoicing.events.verify_signature`, written out here so that a
    webhook receiver importing the SDK never loads the server (a test signs with one, checks with the
    other). Any `v1` in the header may match: several are sent while a secret is rotated."""
    raw = body.encode() if isinstance(body, str) else body
    t: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            t = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    at = int(now.timestamp()) if isinstance(now, datetime) else int(now)
    if t is None or not candidates or abs(at - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, c) for c in candidates)


# --- argument conversion -------------------------------------------------------------------------------------


def decimal_text(value: Number, name: str) -> str:
    """An exact decimal argument as the plain string the wire carries; floats are refused."""
    if isinstance(value, bool | float):
        raise TypeError(
            f"{name} must be a Decimal, int or decimal str, not {type(value).__name__} "
            f"({value!r} is not exact; pass Decimal('{value!r}') or '{value!r}')"
        )
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{name} must be a finite decimal, not {value}")
        return format(value, "f")
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"{name} must be a Decimal, int or decimal str, not {type(value).__name__}")


def _optional_decimal(value: Number | None, name: str) -> str:
    return "" if value is None else decimal_text(value, name)


def plain_json(value: Any, name: str = "definition") -> Any:
    """`value` with every Decimal made a plain string, for JSON; a float anywhere is a TypeError naming its path."""
    if isinstance(value, float):
        raise TypeError(f"{name} is a float ({value!r}); write amounts as Decimal or strings")
    if isinstance(value, Decimal):
        return decimal_text(value, name)
    if isinstance(value, Mapping):
        return {str(k): plain_json(v, f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return value


def _json_text(definition: Mapping[str, Any] | str, name: str) -> str:
    if isinstance(definition, str):
        return definition
    return json.dumps(plain_json(definition, name), separators=(",", ":"))


def _invoice_ref(invoice: int | str) -> dict[str, Any]:
    """An invoice named by its id (an int) or by its number as printed (a str such as "INV-000012")."""
    if isinstance(invoice, bool) or not isinstance(invoice, int | str):
        raise TypeError(f"an invoice is its id (int) or its number (str), not {type(invoice).__name__}")
    return {"label": invoice} if isinstance(invoice, str) else {"id": invoice}


def invoice_filter(
    *, customer: str = "", status: str = "", plan: str = "", start: DateArg = None, end: DateArg = None,
    date: str = "",
) -> pb.InvoiceFilter:  # fmt: skip
    """Which invoices a list or a bulk action covers: a customer (external id), a status, a plan code, and a
    period [start, end) on the billing date (`date` "due", the default) or the issue date ("issued")."""
    return pb.InvoiceFilter(
        customer=customer, status=status, plan=plan, start=_timestamp(start, "start"), end=_timestamp(end, "end"),
        date=date,
    )  # fmt: skip


def _timestamp(moment: DateArg, name: str) -> Timestamp | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be an aware datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} is a naive datetime; give it a timezone (e.g. tzinfo=UTC)")
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _address(address: pb.Address | Mapping[str, str] | None) -> pb.Address | None:
    if address is None or isinstance(address, pb.Address):
        return address
    return pb.Address(**dict(address))


def transfer(
    id: str,
    debit_account_id: int,
    credit_account_id: int,
    amount: Number,
    *,
    code: str = "",
    reference: str = "",
    flags: Iterable[str] = (),
    pending_id: str = "",
    timeout_s: int = 0,
) -> pb.Transfer:
    """A transfer for `BillingClient.create_transfers`, its amount checked for exactness."""
    return pb.Transfer(
        id=id, debit_account_id=debit_account_id, credit_account_id=credit_account_id,
        amount=decimal_text(amount, "amount"), code=code, reference=reference, flags=list(flags),
        pending_id=pending_id, timeout_s=timeout_s,
    )  # fmt: skip


# --- the client ----------------------------------------------------------------------------------------------


class BillingClient:
    """Synchronous BillingService client; thread-safe (one channel, calls are independent).

    `BillingClient("127.0.0.1:50051", key)`; `tls=True` uses the system's root certificates. Each call
    waits at most `timeout_s` (streams: no deadline unless given). Use as a context manager or `close()`.
    """

    def __init__(self, target: str, api_key: str, *, timeout_s: float = 30, tls: bool = False) -> None:
        # Imported here, not at module level: tally.sdk._ingest re-exports this module's names at its end.
        from tally.sdk._ingest import MESSAGE_BYTES_MAX, _channel_options

        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        options = _channel_options(MESSAGE_BYTES_MAX, 2.0)
        self.target = target
        self.timeout_s = timeout_s
        self._metadata = (("authorization", f"Bearer {api_key}"),)
        self._channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials(), options=options)
            if tls
            else grpc.insecure_channel(target, options=options)
        )
        self._stub: Any = pb_grpc.BillingServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise TallyApiError.from_rpc_error(exc) from None

    # --- customers ---------------------------------------------------------------------------------------

    def create_customer(
        self,
        external_id: str,
        *,
        name: str = "",
        currency: str = "USD",
        timezone: str = "UTC",
        address: pb.Address | Mapping[str, str] | None = None,
        tax_region: str = "",
        email: str = "",
        metadata: Mapping[str, str] | None = None,
        tax_id: str = "",
        invoice_grouping: str = "",
    ) -> pb.Customer:
        """Create a customer; ALREADY_EXISTS when `external_id` is taken. `invoice_grouping` "" follows the
        tenant's billing profile."""
        customer = pb.Customer(
            external_id=external_id, name=name, currency=currency, timezone=timezone, address=_address(address),
            tax_region=tax_region, email=email, metadata=dict(metadata or {}), tax_id=tax_id,
            invoice_grouping=invoice_grouping,
        )  # fmt: skip
        result: pb.Customer = self._call("CreateCustomer", pb.CreateCustomerRequest(customer=customer))
        return result

    def get_customer(self, external_id: str) -> pb.Customer:
        result: pb.Customer = self._call("GetCustomer", pb.GetCustomerRequest(external_id=external_id))
        return result

    def list_customers(self, *, page_size: int = 0, page_token: str = "") -> pb.ListCustomersResponse:
        result: pb.ListCustomersResponse = self._call(
            "ListCustomers", pb.ListCustomersRequest(page_size=page_size, page_token=page_token)
        )
        return result

    def iter_customers(self, *, page_size: int = _PAGE_SIZE) -> Iterator[pb.Customer]:
        """Every customer by external id, fetching pages as needed."""
        token = ""
        while True:
            page = self.list_customers(page_size=page_size, page_token=token)
            yield from page.customers
            token = page.next_page_token
            if not token:
                return

    def update_customer(
        self,
        external_id: str,
        *,
        name: str | None = None,
        currency: str | None = None,
        timezone: str | None = None,
        address: pb.Address | Mapping[str, str] | None = None,
        tax_region: str | None = None,
        email: str | None = None,
        metadata: Mapping[str, str] | None = None,
        tax_id: str | None = None,
        invoice_grouping: str | None = None,
    ) -> pb.Customer:
        """Change the fields given (not None); the others stay. At least one is needed.
        `invoice_grouping=""` follows the tenant's billing profile again."""
        changes: dict[str, Any] = {
            "name": name, "currency": currency, "timezone": timezone, "address": _address(address),
            "tax_region": tax_region, "email": email, "metadata": None if metadata is None else dict(metadata),
            "tax_id": tax_id, "invoice_grouping": invoice_grouping,
        }  # fmt: skip
        mask = [k for k, v in changes.items() if v is not None]
        customer = pb.Customer(**{k: v for k, v in changes.items() if v is not None})
        request = pb.UpdateCustomerRequest(external_id=external_id, customer=customer, update_mask=mask)
        result: pb.Customer = self._call("UpdateCustomer", request)
        return result

    def get_customer_360(self, external_id: str) -> pb.Customer360:
        result: pb.Customer360 = self._call("GetCustomer360", pb.GetCustomer360Request(external_id=external_id))
        return result

    def get_portfolio(self) -> pb.Portfolio:
        result: pb.Portfolio = self._call("GetPortfolio", pb.GetPortfolioRequest())
        return result

    # --- meters ------------------------------------------------------------------------------------------

    def create_meter(
        self,
        code: str,
        *,
        name: str = "",
        aggregation: str = "sum",
        value_scale: int = 0,
        unit: str = "",
        filter: Mapping[str, Sequence[str]] | None = None,
        group_by: Sequence[str] = (),
        unique_property: str = "",
        time_unit: str = "",
    ) -> pb.Meter:
        """Create a meter; ALREADY_EXISTS when `code` is taken."""
        meter = pb.Meter(
            code=code, name=name, aggregation=aggregation, value_scale=value_scale, unit=unit,
            filter={k: pb.StringList(values=list(v)) for k, v in (filter or {}).items()},
            group_by=list(group_by), unique_property=unique_property, time_unit=time_unit,
        )  # fmt: skip
        result: pb.Meter = self._call("CreateMeter", pb.CreateMeterRequest(meter=meter))
        return result

    def get_meter(self, code: str) -> pb.Meter:
        result: pb.Meter = self._call("GetMeter", pb.GetMeterRequest(code=code))
        return result

    def list_meters(self, *, page_size: int = 0, page_token: str = "") -> pb.ListMetersResponse:
        result: pb.ListMetersResponse = self._call(
            "ListMeters", pb.ListMetersRequest(page_size=page_size, page_token=page_token)
        )
        return result

    def iter_meters(self, *, page_size: int = _PAGE_SIZE) -> Iterator[pb.Meter]:
        token = ""
        while True:
            page = self.list_meters(page_size=page_size, page_token=token)
            yield from page.meters
            token = page.next_page_token
            if not token:
                return

    # --- plans -------------------------------------------------------------------------------------------

    def create_plan(self, definition: Mapping[str, Any] | str) -> pb.PlanVersion:
        """Create a plan's draft (or replace its open draft) from a definition (mapping or JSON text)."""
        request = pb.CreatePlanRequest(definition_json=_json_text(definition, "definition"))
        result: pb.PlanVersion = self._call("CreatePlan", request)
        return result

    def publish_plan(self, code: str) -> pb.PlanVersion:
        result: pb.PlanVersion = self._call("PublishPlan", pb.PublishPlanRequest(code=code))
        return result

    def get_plan(self, code: str, version: int = 0) -> pb.PlanVersion:
        """One version; 0 = the latest published."""
        result: pb.PlanVersion = self._call("GetPlan", pb.GetPlanRequest(code=code, version=version))
        return result

    def list_plans(self, *, page_size: int = 0, page_token: str = "") -> pb.ListPlansResponse:
        result: pb.ListPlansResponse = self._call(
            "ListPlans", pb.ListPlansRequest(page_size=page_size, page_token=page_token)
        )
        return result

    def iter_plans(self, *, page_size: int = _PAGE_SIZE) -> Iterator[pb.PlanSummary]:
        token = ""
        while True:
            page = self.list_plans(page_size=page_size, page_token=token)
            yield from page.plans
            token = page.next_page_token
            if not token:
                return

    def list_plan_versions(self, code: str) -> list[pb.PlanVersion]:
        """Every version of the plan, oldest first."""
        response = self._call("ListPlanVersions", pb.ListPlanVersionsRequest(code=code))
        return list(response.versions)

    # --- subscriptions -----------------------------------------------------------------------------------

    def create_subscription(
        self,
        customer: str,
        plan: str,
        *,
        plan_version: int = 0,
        start: DateArg = None,
        anchor: DateArg = None,
        end: DateArg = None,
    ) -> pb.Subscription:
        """Subscribe a customer to a published plan version (0 = the latest); unset start = now."""
        request = pb.CreateSubscriptionRequest(
            customer=customer, plan=plan, plan_version=plan_version, start=_timestamp(start, "start"),
            anchor=_timestamp(anchor, "anchor"), end=_timestamp(end, "end"),
        )  # fmt: skip
        result: pb.Subscription = self._call("CreateSubscription", request)
        return result

    def get_subscription(self, id: int) -> pb.Subscription:
        result: pb.Subscription = self._call("GetSubscription", pb.GetSubscriptionRequest(id=id))
        return result

    def list_subscriptions(
        self, *, customer: str = "", page_size: int = 0, page_token: str = ""
    ) -> pb.ListSubscriptionsResponse:
        request = pb.ListSubscriptionsRequest(customer=customer, page_size=page_size, page_token=page_token)
        result: pb.ListSubscriptionsResponse = self._call("ListSubscriptions", request)
        return result

    def iter_subscriptions(self, *, customer: str = "", page_size: int = _PAGE_SIZE) -> Iterator[pb.Subscription]:
        token = ""
        while True:
            page = self.list_subscriptions(customer=customer, page_size=page_size, page_token=token)
            yield from page.subscriptions
            token = page.next_page_token
            if not token:
                return

    def change_plan(
        self,
        id: int,
        plan: str,
        *,
        plan_version: int = 0,
        timing: str = "now",
        at: DateArg = None,
        reason: str = "",
    ) -> pb.ChangePlanResponse:
        """Move subscription `id` to another plan now (prorated) or at `timing="period_end"`."""
        request = pb.ChangePlanRequest(
            id=id, plan=plan, plan_version=plan_version, timing=timing, at=_timestamp(at, "at"), reason=reason
        )
        result: pb.ChangePlanResponse = self._call("ChangePlan", request)
        return result

    def pause_subscription(self, id: int, *, at: DateArg = None, reason: str = "") -> pb.Subscription:
        request = pb.SubscriptionActionRequest(id=id, at=_timestamp(at, "at"), reason=reason)
        result: pb.Subscription = self._call("PauseSubscription", request)
        return result

    def resume_subscription(self, id: int, *, at: DateArg = None, reason: str = "") -> pb.Subscription:
        request = pb.SubscriptionActionRequest(id=id, at=_timestamp(at, "at"), reason=reason)
        result: pb.Subscription = self._call("ResumeSubscription", request)
        return result

    def cancel_subscription(
        self, id: int, *, timing: str = "now", at: DateArg = None, reason: str = ""
    ) -> pb.Subscription:
        request = pb.CancelSubscriptionRequest(id=id, timing=timing, at=_timestamp(at, "at"), reason=reason)
        result: pb.Subscription = self._call("CancelSubscription", request)
        return result

    def withdraw_scheduled_change(self, id: int, *, at: DateArg = None, reason: str = "") -> pb.Subscription:
        """Withdraw the plan change or end scheduled for subscription `id`'s period end."""
        request = pb.SubscriptionActionRequest(id=id, at=_timestamp(at, "at"), reason=reason)
        result: pb.Subscription = self._call("WithdrawScheduledChange", request)
        return result

    # --- usage -------------------------------------------------------------------------------------------

    def query_usage(
        self,
        customer: str,
        meter: str,
        start: datetime,
        end: datetime,
        *,
        window: str = "",
        timezone: str = "",
        group_by: bool = False,
    ) -> list[pb.UsageRow]:
        """Usage over [start, end) (15-minute boundaries), per window ("hour", "day", "month") and dimension."""
        request = pb.QueryUsageRequest(
            customer=customer, meter=meter, start=_timestamp(start, "start"), end=_timestamp(end, "end"),
            window=window, timezone=timezone, group_by=group_by,
        )  # fmt: skip
        return list(self._call("QueryUsage", request).rows)

    # --- invoices ----------------------------------------------------------------------------------------

    def get_upcoming_invoice(self, customer: str, *, at: DateArg = None) -> list[pb.Invoice]:
        """What the customer's next invoices would say at `at` (default now); nothing is written."""
        request = pb.GetUpcomingInvoiceRequest(customer=customer, at=_timestamp(at, "at"))
        return list(self._call("GetUpcomingInvoice", request).invoices)

    def list_invoices(
        self,
        *,
        customer: str = "",
        status: str = "",
        page_size: int = 0,
        page_token: str = "",
        plan: str = "",
        start: DateArg = None,
        end: DateArg = None,
        date: str = "",
    ) -> pb.ListInvoicesResponse:
        """A page of invoices by id; every criterion given must hold (`invoice_filter` has their meaning)."""
        where = invoice_filter(customer=customer, status=status, plan=plan, start=start, end=end, date=date)
        request = pb.ListInvoicesRequest(filter=where, page_size=page_size, page_token=page_token)
        result: pb.ListInvoicesResponse = self._call("ListInvoices", request)
        return result

    def iter_invoices(
        self,
        *,
        customer: str = "",
        status: str = "",
        page_size: int = _PAGE_SIZE,
        plan: str = "",
        start: DateArg = None,
        end: DateArg = None,
        date: str = "",
    ) -> Iterator[pb.Invoice]:
        """Every invoice matching the criteria (all when none are given) by id, fetching pages as needed."""
        token = ""
        while True:
            page = self.list_invoices(
                customer=customer, status=status, plan=plan, start=start, end=end, date=date, page_size=page_size,
                page_token=token,
            )  # fmt: skip
            yield from page.invoices
            token = page.next_page_token
            if not token:
                return

    def get_invoice(self, id: int | str) -> pb.Invoice:
        """One invoice by id (12) or by its number as printed ("INV-000012")."""
        result: pb.Invoice = self._call("GetInvoice", pb.GetInvoiceRequest(**_invoice_ref(id)))
        return result

    def finalize_invoice(self, id: int | str) -> pb.Invoice:
        """Draft → finalized, with the tenant's next gapless number."""
        result: pb.Invoice = self._call("FinalizeInvoice", pb.InvoiceActionRequest(**_invoice_ref(id)))
        return result

    def mark_invoice_paid(self, id: int | str) -> pb.Invoice:
        result: pb.Invoice = self._call("MarkInvoicePaid", pb.InvoiceActionRequest(**_invoice_ref(id)))
        return result

    def void_invoice(self, id: int | str, *, reason: str = "", reissue: bool = False) -> pb.Invoice:
        """Draft or unpaid finalized → void; with `reissue`, the next invoice run bills its items again."""
        request = pb.VoidInvoiceRequest(**_invoice_ref(id), reason=reason, reissue=reissue)
        result: pb.Invoice = self._call("VoidInvoice", request)
        return result

    def create_credit_note(self, id: int | str) -> pb.Invoice | None:
        """Re-rate finalized invoice `id`: the credit note or adjustment issued, or None when nothing changed."""
        response = self._call("CreateCreditNote", pb.InvoiceActionRequest(**_invoice_ref(id)))
        document: pb.Invoice = response.document
        return document if response.HasField("document") else None

    def export_invoice(self, id: int | str, format: str = "pdf") -> pb.ExportInvoiceResponse:
        """The invoice as a document ("json", "csv" or "pdf"): content type, bytes and a file name."""
        request = pb.ExportInvoiceRequest(**_invoice_ref(id), format=format)
        result: pb.ExportInvoiceResponse = self._call("ExportInvoice", request)
        return result

    def run_invoice_cycle(self, as_of: DateArg = None) -> pb.RunInvoiceCycleResponse:
        """Invoice everything due by `as_of` (default now); re-running creates no second invoice."""
        request = pb.RunInvoiceCycleRequest(as_of=_timestamp(as_of, "as_of"))
        result: pb.RunInvoiceCycleResponse = self._call("RunInvoiceCycle", request)
        return result

    # --- payments ----------------------------------------------------------------------------------------

    def record_payment(
        self,
        invoice_id: int,
        amount: Number,
        paid_at: DateArg = None,
        method: str = "bank_transfer",
        reference: str = "",
        key: str | None = None,
    ) -> pb.RecordPaymentResponse:
        """Record `amount` (in the invoice's currency) received for open invoice `invoice_id` on `paid_at`
        (default now). It pays down what is due; an overpayment goes to the customer's cash wallet. The
        response has the payment (`created` is False for a retry of a recorded `key`) and the invoice after
        it. Give `key` (or `paid_at`) to make a retry safe."""
        request = pb.RecordPaymentRequest(
            invoice_id=invoice_id, amount=decimal_text(amount, "amount"), paid_at=_timestamp(paid_at, "paid_at"),
            method=method, reference=reference, key=key or "",
        )  # fmt: skip
        result: pb.RecordPaymentResponse = self._call("RecordPayment", request)
        return result

    def list_payments(self, invoice_id: int) -> list[pb.Payment]:
        """The payments recorded for one invoice, oldest first."""
        return list(self._call("ListPayments", pb.ListPaymentsRequest(invoice_id=invoice_id)).payments)

    def mark_invoice_uncollectible(self, invoice_id: int, reason: str = "") -> pb.Invoice:
        """Open → uncollectible: what is still due is written off to bad debt."""
        request = pb.MarkInvoiceUncollectibleRequest(id=invoice_id, reason=reason)
        result: pb.Invoice = self._call("MarkInvoiceUncollectible", request)
        return result

    #: The short name: `client.mark_uncollectible(invoice_id, reason="...")`.
    mark_uncollectible = mark_invoice_uncollectible

    # --- billing profile (seller) ------------------------------------------------------------------------

    def get_billing_profile(self, *, omit_logo: bool = False) -> pb.BillingProfile:
        """The seller on the tenant's documents (the defaults if never set); `omit_logo` skips the bytes."""
        result: pb.BillingProfile = self._call("GetBillingProfile", pb.GetBillingProfileRequest(omit_logo=omit_logo))
        return result

    def update_billing_profile(
        self,
        *,
        legal_name: str | None = None,
        address: pb.Address | Mapping[str, str] | None = None,
        clear_address: bool = False,
        tax_id: str | None = None,
        payment_instructions: str | None = None,
        payment_terms_days: int | None = None,
        logo: bytes | None = None,
        issue_zero_total: bool | None = None,
        invoice_grouping: str | None = None,
    ) -> pb.BillingProfile:
        """Change the fields given (not None); the others stay. `logo=b""` or `clear_address=True` remove
        them; `payment_terms_days=0` means due on receipt."""
        if clear_address and address is not None:
            raise ValueError("give address or clear_address, not both")
        changes: dict[str, Any] = {
            "legal_name": legal_name, "address": _address(address), "tax_id": tax_id,
            "payment_instructions": payment_instructions, "payment_terms_days": payment_terms_days, "logo": logo,
            "issue_zero_total": issue_zero_total, "invoice_grouping": invoice_grouping,
        }  # fmt: skip
        mask = [k for k, v in changes.items() if v is not None] + (["address"] if clear_address else [])
        profile = pb.BillingProfile(**{k: v for k, v in changes.items() if v is not None})
        request = pb.UpdateBillingProfileRequest(profile=profile, update_mask=mask)
        result: pb.BillingProfile = self._call("UpdateBillingProfile", request)
        return result

    # --- ledger ------------------------------------------------------------------------------------------

    def top_up_wallet(
        self, top_up_id: str, customer: str, amount: Number, unit: str, *, reference: str = ""
    ) -> pb.TopUpWalletResponse:
        """Add money or points to a wallet; idempotent by `top_up_id`."""
        request = pb.TopUpWalletRequest(
            top_up_id=top_up_id, customer=customer, amount=decimal_text(amount, "amount"), unit=unit,
            reference=reference,
        )  # fmt: skip
        result: pb.TopUpWalletResponse = self._call("TopUpWallet", request)
        return result

    def create_grant(
        self,
        grant_id: str,
        customer: str,
        amount: Number,
        unit: str,
        *,
        kind: str = "paid",
        priority: int = 100,
        effective_at: DateArg = None,
        expires_at: DateArg = None,
        applies_to: Sequence[str] = (),
    ) -> pb.Grant:
        """Grant credits ("paid" or "promotional"); idempotent by `grant_id`."""
        grant = pb.Grant(
            grant_id=grant_id, customer=customer, amount=decimal_text(amount, "amount"), unit=unit, kind=kind,
            priority=priority, effective_at=_timestamp(effective_at, "effective_at"),
            expires_at=_timestamp(expires_at, "expires_at"), applies_to=list(applies_to),
        )  # fmt: skip
        result: pb.Grant = self._call("CreateGrant", pb.CreateGrantRequest(grant=grant))
        return result

    def list_grants(self, customer: str) -> list[pb.Grant]:
        """The customer's grants in drawing order."""
        return list(self._call("ListGrants", pb.ListGrantsRequest(customer=customer)).grants)

    def get_balances(self, customer: str) -> pb.GetBalancesResponse:
        result: pb.GetBalancesResponse = self._call("GetBalances", pb.GetBalancesRequest(customer=customer))
        return result

    def create_transfers(self, transfers: Iterable[pb.Transfer]) -> list[pb.TransferResult]:
        """One result per transfer, in order (build them with `tally.sdk._billing.transfer`)."""
        response = self._call("CreateTransfers", pb.CreateTransfersRequest(transfers=list(transfers)))
        return list(response.results)

    def list_account_history(self, account_id: int, *, limit: int = 0) -> list[pb.HistoryLine]:
        request = pb.ListAccountHistoryRequest(account_id=account_id, limit=limit)
        return list(self._call("ListAccountHistory", request).lines)

    def convert_credits(
        self, conversion_id: str, customer: str, amount: Number, from_unit: str, to_unit: str
    ) -> pb.ConvertCreditsResponse:
        """Convert between money and points at the rate in force; idempotent by `conversion_id`."""
        request = pb.ConvertCreditsRequest(
            conversion_id=conversion_id, customer=customer, amount=decimal_text(amount, "amount"),
            from_unit=from_unit, to_unit=to_unit,
        )  # fmt: skip
        result: pb.ConvertCreditsResponse = self._call("ConvertCredits", request)
        return result

    # --- pricing -----------------------------------------------------------------------------------------

    def simulate_price(self, price: Mapping[str, Any] | str, quantities: Iterable[Number]) -> pb.SimulatePriceResponse:
        """Price quantities with a price definition (docs/price.schema.json) without writing anything."""
        request = pb.SimulatePriceRequest(
            price_json=_json_text(price, "price"),
            quantities=[decimal_text(q, f"quantities[{i}]") for i, q in enumerate(quantities)],
        )
        result: pb.SimulatePriceResponse = self._call("SimulatePrice", request)
        return result

    # --- events out --------------------------------------------------------------------------------------

    def watch_events(
        self, after_sequence: int = 0, types: Sequence[str] = (), *, timeout_s: float | None = None
    ) -> Generator[pb.DomainEvent, None, None]:
        """Events after `after_sequence`, then new ones as they commit, until the generator is closed
        (`close()` cancels the stream) or `timeout_s` passes. Resume after a failure with the last
        `sequence` received as `after_sequence`."""
        request = pb.WatchEventsRequest(after_sequence=after_sequence, types=list(types))
        call = self._stub.WatchEvents(request, metadata=self._metadata, timeout=timeout_s)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise TallyApiError.from_rpc_error(exc) from None
        finally:
            call.cancel()

    def list_events(
        self, *, after_sequence: int = 0, page_size: int = 0, types: Sequence[str] = ()
    ) -> pb.ListEventsResponse:
        request = pb.ListEventsRequest(after_sequence=after_sequence, page_size=page_size, types=list(types))
        result: pb.ListEventsResponse = self._call("ListEvents", request)
        return result

    def iter_events(
        self, *, after_sequence: int = 0, types: Sequence[str] = (), page_size: int = _PAGE_SIZE
    ) -> Iterator[pb.DomainEvent]:
        """Past events after `after_sequence`, in order, up to the latest committed one."""
        cursor = after_sequence
        while True:
            page = self.list_events(after_sequence=cursor, page_size=page_size, types=types)
            yield from page.events
            if page.last_sequence <= cursor:
                return
            cursor = page.last_sequence

    def create_webhook_endpoint(
        self, url: str, *, types: Sequence[str] = (), after_sequence: int = 0
    ) -> pb.WebhookEndpoint:
        """Register an endpoint; the response's `secret` is shown only this once."""
        request = pb.CreateWebhookEndpointRequest(url=url, types=list(types), after_sequence=after_sequence)
        result: pb.WebhookEndpoint = self._call("CreateWebhookEndpoint", request)
        return result

    def list_webhook_endpoints(self) -> list[pb.WebhookEndpoint]:
        return list(self._call("ListWebhookEndpoints", pb.ListWebhookEndpointsRequest()).endpoints)

    def disable_webhook_endpoint(self, id: int) -> pb.WebhookEndpoint:
        result: pb.WebhookEndpoint = self._call("DisableWebhookEndpoint", pb.DisableWebhookEndpointRequest(id=id))
        return result

    def list_webhook_deliveries(
        self, endpoint_id: int, *, page_size: int = 0, page_token: str = ""
    ) -> pb.ListWebhookDeliveriesResponse:
        request = pb.ListWebhookDeliveriesRequest(endpoint_id=endpoint_id, page_size=page_size, page_token=page_token)
        result: pb.ListWebhookDeliveriesResponse = self._call("ListWebhookDeliveries", request)
        return result

    def replay_webhook_events(
        self, endpoint_id: int, *, after_sequence: int = 0, to_sequence: int = 0
    ) -> pb.ReplayWebhookEventsResponse:
        request = pb.ReplayWebhookEventsRequest(
            endpoint_id=endpoint_id, after_sequence=after_sequence, to_sequence=to_sequence
        )
        result: pb.ReplayWebhookEventsResponse = self._call("ReplayWebhookEvents", request)
        return result

    # --- alerts ------------------------------------------------------------------------------------------

    def create_alert(self, customer: str, kind: str, threshold: Number, *, meter: str = "", unit: str = "") -> pb.Alert:
        """A "usage" (with `meter`), "spend" or "balance" (with `unit`) threshold for a customer."""
        alert = pb.Alert(
            customer=customer, kind=kind, meter=meter, unit=unit, threshold=decimal_text(threshold, "threshold")
        )
        result: pb.Alert = self._call("CreateAlert", pb.CreateAlertRequest(alert=alert))
        return result

    def list_alerts(self, customer: str = "") -> list[pb.Alert]:
        return list(self._call("ListAlerts", pb.ListAlertsRequest(customer=customer)).alerts)

    def delete_alert(self, id: int) -> None:
        self._call("DeleteAlert", pb.DeleteAlertRequest(id=id))

    # --- coupons and discounts ---------------------------------------------------------------------------

    def create_coupon(
        self,
        code: str,
        *,
        percent: Number | None = None,
        amount: Number | None = None,
        currency: str = "",
        duration: str = "once",
        periods: int = 0,
        name: str = "",
        applies_to: Sequence[str] = (),
        redeem_by: DateArg = None,
        max_redemptions: int = 0,
    ) -> pb.Coupon:
        """A coupon: `percent` off (e.g. "12.5") or `amount` off in `currency`; `duration` "once",
        "repeating" (for `periods` billing periods) or "forever". ALREADY_EXISTS when `code` is taken."""
        if (percent is None) == (amount is None):
            raise ValueError("give percent or amount (with currency), exactly one of them")
        coupon = pb.Coupon(
            code=code, name=name, kind="percent" if percent is not None else "amount",
            percent=_optional_decimal(percent, "percent"), amount=_optional_decimal(amount, "amount"),
            currency=currency, duration=duration, periods=periods, applies_to=list(applies_to),
            redeem_by=_timestamp(redeem_by, "redeem_by"), max_redemptions=max_redemptions,
        )  # fmt: skip
        result: pb.Coupon = self._call("CreateCoupon", pb.CreateCouponRequest(coupon=coupon))
        return result

    def list_coupons(self, *, page_size: int = 0, page_token: str = "") -> pb.ListCouponsResponse:
        result: pb.ListCouponsResponse = self._call(
            "ListCoupons", pb.ListCouponsRequest(page_size=page_size, page_token=page_token)
        )
        return result

    def iter_coupons(self, *, page_size: int = _PAGE_SIZE) -> Iterator[pb.Coupon]:
        """Every coupon by code, fetching pages as needed."""
        token = ""
        while True:
            page = self.list_coupons(page_size=page_size, page_token=token)
            yield from page.coupons
            token = page.next_page_token
            if not token:
                return

    def apply_coupon(
        self, coupon: str, *, customer: str = "", subscription_id: int = 0, starts_at: DateArg = None
    ) -> pb.Discount:
        """Apply `coupon` to a customer (all its subscriptions) or to one subscription: give one of them."""
        request = pb.ApplyCouponRequest(
            coupon=coupon, customer=customer, subscription_id=subscription_id,
            starts_at=_timestamp(starts_at, "starts_at"),
        )  # fmt: skip
        result: pb.Discount = self._call("ApplyCoupon", request)
        return result

    def list_discounts(
        self, *, customer: str = "", subscription_id: int = 0, include_removed: bool = False, page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListDiscountsResponse:  # fmt: skip
        request = pb.ListDiscountsRequest(
            customer=customer, subscription_id=subscription_id, include_removed=include_removed,
            page_size=page_size, page_token=page_token,
        )  # fmt: skip
        result: pb.ListDiscountsResponse = self._call("ListDiscounts", request)
        return result

    def iter_discounts(
        self, *, customer: str = "", subscription_id: int = 0, include_removed: bool = False,
        page_size: int = _PAGE_SIZE,
    ) -> Iterator[pb.Discount]:  # fmt: skip
        """Every discount by id (of one customer or subscription when given), fetching pages as needed."""
        token = ""
        while True:
            page = self.list_discounts(
                customer=customer, subscription_id=subscription_id, include_removed=include_removed,
                page_size=page_size, page_token=token,
            )  # fmt: skip
            yield from page.discounts
            token = page.next_page_token
            if not token:
                return

    def remove_discount(self, id: int) -> pb.Discount:
        """End a discount now; issued invoices keep theirs. Removing it again returns it unchanged."""
        result: pb.Discount = self._call("RemoveDiscount", pb.RemoveDiscountRequest(id=id))
        return result

    # --- entitlements ------------------------------------------------------------------------------------

    def check_entitlement(self, customer: str, feature: str, requested: Number | None = None) -> pb.Entitlement:
        """May `customer` use `feature` now (for `requested` of it: default 1 for a quota)?"""
        request = pb.CheckEntitlementRequest(
            customer=customer, feature=feature, requested=_optional_decimal(requested, "requested")
        )
        result: pb.Entitlement = self._call("CheckEntitlement", request)
        return result

    def list_entitlements(self, customer: str) -> list[pb.Entitlement]:
        return list(self._call("ListEntitlements", pb.ListEntitlementsRequest(customer=customer)).entitlements)

    # --- points: units, rates, earning -------------------------------------------------------------------

    def define_points_unit(self, code: str, scale: int, *, name: str = "") -> pb.PointsUnit:
        """Define a points unit (lower-case code, `scale` decimal places); again with the same scale returns it."""
        result: pb.PointsUnit = self._call(
            "DefinePointsUnit", pb.DefinePointsUnitRequest(code=code, scale=scale, name=name)
        )
        return result

    def list_points_units(self, *, page_size: int = 0, page_token: str = "") -> pb.ListPointsUnitsResponse:
        result: pb.ListPointsUnitsResponse = self._call(
            "ListPointsUnits", pb.ListPointsUnitsRequest(page_size=page_size, page_token=page_token)
        )
        return result

    def iter_points_units(self, *, page_size: int = _PAGE_SIZE) -> Iterator[pb.PointsUnit]:
        """Every points unit by code, fetching pages as needed."""
        token = ""
        while True:
            page = self.list_points_units(page_size=page_size, page_token=token)
            yield from page.units
            token = page.next_page_token
            if not token:
                return

    def set_conversion_rate(
        self, currency: str, points_unit: str, rate: Number, valid_from: datetime, *, valid_to: DateArg = None,
        rounding: str = "",
    ) -> pb.ConversionRate:  # fmt: skip
        """`rate` points per one whole `currency` unit over [valid_from, valid_to); `rounding` "down" (default),
        "up", "half_up" or "half_even". ALREADY_EXISTS when it overlaps a period of the same pair."""
        request = pb.SetConversionRateRequest(
            currency=currency, points_unit=points_unit, rate=decimal_text(rate, "rate"),
            valid_from=_timestamp(valid_from, "valid_from"), valid_to=_timestamp(valid_to, "valid_to"),
            rounding=rounding,
        )  # fmt: skip
        result: pb.ConversionRate = self._call("SetConversionRate", request)
        return result

    def list_conversion_rates(
        self, *, currency: str = "", points_unit: str = "", page_size: int = 0, page_token: str = ""
    ) -> pb.ListConversionRatesResponse:
        request = pb.ListConversionRatesRequest(
            currency=currency, points_unit=points_unit, page_size=page_size, page_token=page_token
        )
        result: pb.ListConversionRatesResponse = self._call("ListConversionRates", request)
        return result

    def iter_conversion_rates(
        self, *, currency: str = "", points_unit: str = "", page_size: int = _PAGE_SIZE
    ) -> Iterator[pb.ConversionRate]:
        """Every rate (of one currency and/or points unit when given), fetching pages as needed."""
        token = ""
        while True:
            page = self.list_conversion_rates(
                currency=currency, points_unit=points_unit, page_size=page_size, page_token=token
            )
            yield from page.rates
            token = page.next_page_token
            if not token:
                return

    def accrue_points(self, *, as_of: DateArg = None, since: DateArg = None) -> pb.AccruePointsResponse:
        """Credit what the plans' earning rules owe up to `as_of` (default now); calling it again credits only
        what usage added since."""
        request = pb.AccruePointsRequest(as_of=_timestamp(as_of, "as_of"), since=_timestamp(since, "since"))
        result: pb.AccruePointsResponse = self._call("AccruePoints", request)
        return result

    # --- insight: price simulation and revenue leakage ---------------------------------------------------

    def simulate_plan(
        self,
        candidate: Mapping[str, Any] | str,
        start: datetime,
        end: datetime,
        *,
        current_plan: str = "",
        more_than_pct: Number | None = None,
        limit: int = 0,
    ) -> pb.SimulatePlanResponse:
        """Re-price a past window's stored usage under `candidate`: a plan definition (a mapping, or its JSON
        text starting with "{") or a stored version "CODE@VERSION". Nothing is written."""
        as_json = not isinstance(candidate, str) or candidate.lstrip().startswith("{")
        request = pb.SimulatePlanRequest(
            plan_json=_json_text(candidate, "candidate") if as_json else "",
            plan="" if as_json else str(candidate),
            start=_timestamp(start, "start"),
            end=_timestamp(end, "end"),
            current_plan=current_plan,
            more_than_pct="" if more_than_pct is None else decimal_text(more_than_pct, "more_than_pct"),
            limit=limit,
        )
        result: pb.SimulatePlanResponse = self._call("SimulatePlan", request)
        return result

    def get_revenue_leakage(self, start: datetime, end: datetime, *, limit: int = 0) -> pb.RevenueLeakage:
        """Counted usage of [start, end) that no invoice will bill, by category."""
        request = pb.GetRevenueLeakageRequest(start=_timestamp(start, "start"), end=_timestamp(end, "end"), limit=limit)
        result: pb.RevenueLeakage = self._call("GetRevenueLeakage", request)
        return result

    # --- bulk invoice actions ----------------------------------------------------------------------------

    def bulk_finalize_invoices(
        self, where: pb.InvoiceFilter | None = None, *, limit: int = 0, page_token: str = "", dry_run: bool = False
    ) -> pb.BulkInvoicesResponse:
        """Finalize the drafts `where` (an `invoice_filter(...)`) matches, at most `limit` examined (0 = 100);
        continue with the response's next_page_token until it is empty. Safe to repeat."""
        request = pb.BulkInvoicesRequest(filter=where, limit=limit, page_token=page_token, dry_run=dry_run)
        result: pb.BulkInvoicesResponse = self._call("BulkFinalizeInvoices", request)
        return result

    def bulk_void_invoices(
        self, where: pb.InvoiceFilter, reason: str, *, reissue: bool = False, limit: int = 0, page_token: str = "",
        dry_run: bool = False,
    ) -> pb.BulkInvoicesResponse:  # fmt: skip
        """Void the drafts and unpaid finalized invoices `where` matches (at least one criterion), with `reason`."""
        request = pb.BulkVoidInvoicesRequest(filter=where, reason=reason, reissue=reissue, limit=limit,
                                             page_token=page_token, dry_run=dry_run)  # fmt: skip
        result: pb.BulkInvoicesResponse = self._call("BulkVoidInvoices", request)
        return result

    def bulk_mark_invoices_paid(
        self, where: pb.InvoiceFilter | None = None, *, limit: int = 0, page_token: str = "", dry_run: bool = False
    ) -> pb.BulkInvoicesResponse:
        """Record a payment of everything due, dated now, on each open invoice `where` matches; never twice."""
        request = pb.BulkInvoicesRequest(filter=where, limit=limit, page_token=page_token, dry_run=dry_run)
        result: pb.BulkInvoicesResponse = self._call("BulkMarkInvoicesPaid", request)
        return result

    # --- disputes and customer portal links ----------------------------------------------------------------

    def open_dispute(self, invoice_id: int, line: int, reason: str, *, customer: str = "") -> pb.Dispute:
        """Flag line `line` (1 = first) of issued invoice `invoice_id` with the customer's `reason`; with
        `customer`, the invoice must be theirs."""
        request = pb.OpenDisputeRequest(invoice_id=invoice_id, line=line, reason=reason, customer=customer)
        result: pb.Dispute = self._call("OpenDispute", request)
        return result

    def list_disputes(
        self, *, status: str = "", customer: str = "", invoice_id: int = 0, page_size: int = 0, page_token: str = ""
    ) -> pb.ListDisputesResponse:
        """One page of disputes, oldest first (status: open, credited or rejected)."""
        request = pb.ListDisputesRequest(status=status, customer=customer, invoice_id=invoice_id,
                                         page_size=page_size, page_token=page_token)  # fmt: skip
        result: pb.ListDisputesResponse = self._call("ListDisputes", request)
        return result

    def iter_disputes(
        self, *, status: str = "", customer: str = "", page_size: int = _PAGE_SIZE
    ) -> Iterator[pb.Dispute]:
        """Every dispute matching, page after page."""
        token = ""
        while True:
            page = self.list_disputes(status=status, customer=customer, page_size=page_size, page_token=token)
            yield from page.disputes
            token = page.next_page_token
            if not token:
                return

    def resolve_dispute(
        self, id: int, *, credit: Number | None = None, note: str = "", reject: str | None = None
    ) -> pb.ResolveDisputeResponse:
        """Answer dispute `id`: `credit` (an amount of the line before tax, with an optional `note`) issues a
        credit note; `reject` (the reason, for the customer) rejects it. Exactly one of them."""
        if (credit is None) == (reject is None):
            raise ValueError("give credit= or reject=, exactly one of them")
        if credit is not None:
            request = pb.ResolveDisputeRequest(id=id, credit=pb.DisputeCredit(amount=decimal_text(credit, "credit"),
                                                                              note=note))  # fmt: skip
        else:
            request = pb.ResolveDisputeRequest(id=id, reject=pb.DisputeRejection(note=reject or ""))
        result: pb.ResolveDisputeResponse = self._call("ResolveDispute", request)
        return result

    def create_portal_session(self, customer: str, *, ttl_seconds: int = 0, return_url: str = "") -> pb.PortalSession:
        """A signed link (`path`, to put behind the server's public HTTP address) opening `customer`'s portal
        for `ttl_seconds` (at most 7 days; 0 = one hour)."""
        request = pb.CreatePortalSessionRequest(customer=customer, ttl_seconds=ttl_seconds, return_url=return_url)
        result: pb.PortalSession = self._call("CreatePortalSession", request)
        return result

    def revoke_portal_links(self) -> pb.RevokePortalLinksResponse:
        """Rotate the tenant's portal signing key: every earlier link and portal session stops working."""
        result: pb.RevokePortalLinksResponse = self._call("RevokePortalLinks", pb.RevokePortalLinksRequest())
        return result
