import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Address(_message.Message):
    __slots__ = ("line1", "line2", "city", "region", "postal_code", "country")
    LINE1_FIELD_NUMBER: _ClassVar[int]
    LINE2_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    POSTAL_CODE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    line1: str
    line2: str
    city: str
    region: str
    postal_code: str
    country: str
    def __init__(self, line1: _Optional[str] = ..., line2: _Optional[str] = ..., city: _Optional[str] = ..., region: _Optional[str] = ..., postal_code: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...

class Customer(_message.Message):
    __slots__ = ("external_id", "name", "currency", "timezone", "address", "tax_region", "email", "metadata", "created_at", "tax_id", "invoice_grouping")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TAX_REGION_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_GROUPING_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    name: str
    currency: str
    timezone: str
    address: Address
    tax_region: str
    email: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    tax_id: str
    invoice_grouping: str
    def __init__(self, external_id: _Optional[str] = ..., name: _Optional[str] = ..., currency: _Optional[str] = ..., timezone: _Optional[str] = ..., address: _Optional[_Union[Address, _Mapping]] = ..., tax_region: _Optional[str] = ..., email: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tax_id: _Optional[str] = ..., invoice_grouping: _Optional[str] = ...) -> None: ...

class CreateCustomerRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ...) -> None: ...

class GetCustomerRequest(_message.Message):
    __slots__ = ("external_id",)
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    def __init__(self, external_id: _Optional[str] = ...) -> None: ...

class ListCustomersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCustomersResponse(_message.Message):
    __slots__ = ("customers", "next_page_token")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[Customer]
    next_page_token: str
    def __init__(self, customers: _Optional[_Iterable[_Union[Customer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateCustomerRequest(_message.Message):
    __slots__ = ("external_id", "customer", "update_mask")
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    customer: Customer
    update_mask: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, external_id: _Optional[str] = ..., customer: _Optional[_Union[Customer, _Mapping]] = ..., update_mask: _Optional[_Iterable[str]] = ...) -> None: ...

class GetCustomer360Request(_message.Message):
    __slots__ = ("external_id",)
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    def __init__(self, external_id: _Optional[str] = ...) -> None: ...

class MeterUsage(_message.Message):
    __slots__ = ("meter", "quantity", "unit", "previous_quantity")
    METER_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    meter: str
    quantity: str
    unit: str
    previous_quantity: str
    def __init__(self, meter: _Optional[str] = ..., quantity: _Optional[str] = ..., unit: _Optional[str] = ..., previous_quantity: _Optional[str] = ...) -> None: ...

class UnitAmount(_message.Message):
    __slots__ = ("unit", "amount")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    unit: str
    amount: str
    def __init__(self, unit: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class Customer360(_message.Message):
    __slots__ = ("customer", "stage", "stage_reason", "subscriptions", "period_start", "period_end", "usage", "spend_so_far", "balances", "open_invoices", "past_invoices", "sla")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_REASON_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    SPEND_SO_FAR_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    OPEN_INVOICES_FIELD_NUMBER: _ClassVar[int]
    PAST_INVOICES_FIELD_NUMBER: _ClassVar[int]
    SLA_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    stage: str
    stage_reason: str
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    usage: _containers.RepeatedCompositeFieldContainer[MeterUsage]
    spend_so_far: UnitAmount
    balances: _containers.RepeatedCompositeFieldContainer[UnitBalance]
    open_invoices: _containers.RepeatedCompositeFieldContainer[InvoiceSummary]
    past_invoices: _containers.RepeatedCompositeFieldContainer[InvoiceSummary]
    sla: _containers.RepeatedCompositeFieldContainer[SlaStatus]
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ..., stage: _Optional[str] = ..., stage_reason: _Optional[str] = ..., subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., usage: _Optional[_Iterable[_Union[MeterUsage, _Mapping]]] = ..., spend_so_far: _Optional[_Union[UnitAmount, _Mapping]] = ..., balances: _Optional[_Iterable[_Union[UnitBalance, _Mapping]]] = ..., open_invoices: _Optional[_Iterable[_Union[InvoiceSummary, _Mapping]]] = ..., past_invoices: _Optional[_Iterable[_Union[InvoiceSummary, _Mapping]]] = ..., sla: _Optional[_Iterable[_Union[SlaStatus, _Mapping]]] = ...) -> None: ...

class InvoiceSummary(_message.Message):
    __slots__ = ("id", "label", "status", "kind", "total", "currency", "due_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    status: str
    kind: str
    total: str
    currency: str
    due_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ..., status: _Optional[str] = ..., kind: _Optional[str] = ..., total: _Optional[str] = ..., currency: _Optional[str] = ..., due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SlaStatus(_message.Message):
    __slots__ = ("charge", "meter", "measured", "credit", "status")
    CHARGE_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    charge: str
    meter: str
    measured: str
    credit: str
    status: str
    def __init__(self, charge: _Optional[str] = ..., meter: _Optional[str] = ..., measured: _Optional[str] = ..., credit: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class GetPortfolioRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PortfolioStage(_message.Message):
    __slots__ = ("stage", "customers", "revenue", "sample_customers")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    REVENUE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    customers: int
    revenue: _containers.RepeatedCompositeFieldContainer[UnitAmount]
    sample_customers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stage: _Optional[str] = ..., customers: _Optional[int] = ..., revenue: _Optional[_Iterable[_Union[UnitAmount, _Mapping]]] = ..., sample_customers: _Optional[_Iterable[str]] = ...) -> None: ...

class Portfolio(_message.Message):
    __slots__ = ("stages", "customers")
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    stages: _containers.RepeatedCompositeFieldContainer[PortfolioStage]
    customers: int
    def __init__(self, stages: _Optional[_Iterable[_Union[PortfolioStage, _Mapping]]] = ..., customers: _Optional[int] = ...) -> None: ...

class Meter(_message.Message):
    __slots__ = ("code", "name", "aggregation", "value_scale", "unit", "filter", "group_by", "unique_property", "time_unit")
    class FilterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    VALUE_SCALE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIT_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    aggregation: str
    value_scale: int
    unit: str
    filter: _containers.MessageMap[str, StringList]
    group_by: _containers.RepeatedScalarFieldContainer[str]
    unique_property: str
    time_unit: str
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., aggregation: _Optional[str] = ..., value_scale: _Optional[int] = ..., unit: _Optional[str] = ..., filter: _Optional[_Mapping[str, StringList]] = ..., group_by: _Optional[_Iterable[str]] = ..., unique_property: _Optional[str] = ..., time_unit: _Optional[str] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateMeterRequest(_message.Message):
    __slots__ = ("meter",)
    METER_FIELD_NUMBER: _ClassVar[int]
    meter: Meter
    def __init__(self, meter: _Optional[_Union[Meter, _Mapping]] = ...) -> None: ...

class GetMeterRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class ListMetersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMetersResponse(_message.Message):
    __slots__ = ("meters", "next_page_token")
    METERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    meters: _containers.RepeatedCompositeFieldContainer[Meter]
    next_page_token: str
    def __init__(self, meters: _Optional[_Iterable[_Union[Meter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PlanVersion(_message.Message):
    __slots__ = ("code", "version", "status", "name", "currency", "interval", "trial_days", "definition_json", "features", "created_at", "published_at")
    CODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TRIAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    code: str
    version: int
    status: str
    name: str
    currency: str
    interval: str
    trial_days: int
    definition_json: str
    features: _containers.RepeatedCompositeFieldContainer[Feature]
    created_at: _timestamp_pb2.Timestamp
    published_at: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., version: _Optional[int] = ..., status: _Optional[str] = ..., name: _Optional[str] = ..., currency: _Optional[str] = ..., interval: _Optional[str] = ..., trial_days: _Optional[int] = ..., definition_json: _Optional[str] = ..., features: _Optional[_Iterable[_Union[Feature, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Feature(_message.Message):
    __slots__ = ("key", "kind", "meter", "amount", "unit")
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    key: str
    kind: str
    meter: str
    amount: str
    unit: str
    def __init__(self, key: _Optional[str] = ..., kind: _Optional[str] = ..., meter: _Optional[str] = ..., amount: _Optional[str] = ..., unit: _Optional[str] = ...) -> None: ...

class CreatePlanRequest(_message.Message):
    __slots__ = ("definition_json",)
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    definition_json: str
    def __init__(self, definition_json: _Optional[str] = ...) -> None: ...

class PublishPlanRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("code", "version")
    CODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    code: str
    version: int
    def __init__(self, code: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ListPlansRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class PlanSummary(_message.Message):
    __slots__ = ("code", "name", "latest_version", "latest_status", "published_version")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATEST_STATUS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_VERSION_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    latest_version: int
    latest_status: str
    published_version: int
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., latest_version: _Optional[int] = ..., latest_status: _Optional[str] = ..., published_version: _Optional[int] = ...) -> None: ...

class ListPlansResponse(_message.Message):
    __slots__ = ("plans", "next_page_token")
    PLANS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[PlanSummary]
    next_page_token: str
    def __init__(self, plans: _Optional[_Iterable[_Union[PlanSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListPlanVersionsRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class ListPlanVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[PlanVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[PlanVersion, _Mapping]]] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("id", "customer", "plan", "plan_version", "state", "billing_anchor", "started_at", "trial_ends_at", "ends_at", "pending_plan", "pending_plan_version", "pending_change_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BILLING_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    PENDING_PLAN_FIELD_NUMBER: _ClassVar[int]
    PENDING_PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    PENDING_CHANGE_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    customer: str
    plan: str
    plan_version: int
    state: str
    billing_anchor: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    trial_ends_at: _timestamp_pb2.Timestamp
    ends_at: _timestamp_pb2.Timestamp
    pending_plan: str
    pending_plan_version: int
    pending_change_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., customer: _Optional[str] = ..., plan: _Optional[str] = ..., plan_version: _Optional[int] = ..., state: _Optional[str] = ..., billing_anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trial_ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pending_plan: _Optional[str] = ..., pending_plan_version: _Optional[int] = ..., pending_change_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSubscriptionRequest(_message.Message):
    __slots__ = ("customer", "plan", "plan_version", "start", "anchor", "end")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    customer: str
    plan: str
    plan_version: int
    start: _timestamp_pb2.Timestamp
    anchor: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, customer: _Optional[str] = ..., plan: _Optional[str] = ..., plan_version: _Optional[int] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ("customer", "page_size", "page_token")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customer: str
    page_size: int
    page_token: str
    def __init__(self, customer: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions", "next_page_token")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    next_page_token: str
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ChangePlanRequest(_message.Message):
    __slots__ = ("id", "plan", "plan_version", "timing", "at", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    plan: str
    plan_version: int
    timing: str
    at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, id: _Optional[int] = ..., plan: _Optional[str] = ..., plan_version: _Optional[int] = ..., timing: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ChangePlanResponse(_message.Message):
    __slots__ = ("subscription", "effective_at", "old_fraction", "new_fraction")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    OLD_FRACTION_FIELD_NUMBER: _ClassVar[int]
    NEW_FRACTION_FIELD_NUMBER: _ClassVar[int]
    subscription: Subscription
    effective_at: _timestamp_pb2.Timestamp
    old_fraction: str
    new_fraction: str
    def __init__(self, subscription: _Optional[_Union[Subscription, _Mapping]] = ..., effective_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., old_fraction: _Optional[str] = ..., new_fraction: _Optional[str] = ...) -> None: ...

class SubscriptionActionRequest(_message.Message):
    __slots__ = ("id", "at", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, id: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelSubscriptionRequest(_message.Message):
    __slots__ = ("id", "timing", "at", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    timing: str
    at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, id: _Optional[int] = ..., timing: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class QueryUsageRequest(_message.Message):
    __slots__ = ("customer", "meter", "start", "end", "window", "timezone", "group_by")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    customer: str
    meter: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    window: str
    timezone: str
    group_by: bool
    def __init__(self, customer: _Optional[str] = ..., meter: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window: _Optional[str] = ..., timezone: _Optional[str] = ..., group_by: _Optional[bool] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("window_start", "group", "quantity", "events")
    class GroupEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    window_start: _timestamp_pb2.Timestamp
    group: _containers.ScalarMap[str, str]
    quantity: str
    events: int
    def __init__(self, window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group: _Optional[_Mapping[str, str]] = ..., quantity: _Optional[str] = ..., events: _Optional[int] = ...) -> None: ...

class QueryUsageResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ...) -> None: ...

class InvoiceLine(_message.Message):
    __slots__ = ("position", "kind", "charge", "meter", "group", "quantity", "unit_price", "amount", "amount_exact", "period_start", "period_end", "detail_json")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHARGE_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_EXACT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    position: int
    kind: str
    charge: str
    meter: str
    group: str
    quantity: str
    unit_price: str
    amount: str
    amount_exact: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    detail_json: str
    def __init__(self, position: _Optional[int] = ..., kind: _Optional[str] = ..., charge: _Optional[str] = ..., meter: _Optional[str] = ..., group: _Optional[str] = ..., quantity: _Optional[str] = ..., unit_price: _Optional[str] = ..., amount: _Optional[str] = ..., amount_exact: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., detail_json: _Optional[str] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("id", "label", "number", "kind", "status", "customer", "subscription_id", "corrects_invoice_id", "currency", "period_start", "period_end", "due_at", "subtotal", "tax", "credits_applied", "total", "tax_region", "tax_rate", "tax_inclusive", "lines", "issued_at", "payment_due_at", "paid_at", "amount_paid", "amount_due")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRECTS_INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    TAX_FIELD_NUMBER: _ClassVar[int]
    CREDITS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAX_REGION_FIELD_NUMBER: _ClassVar[int]
    TAX_RATE_FIELD_NUMBER: _ClassVar[int]
    TAX_INCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_DUE_AT_FIELD_NUMBER: _ClassVar[int]
    PAID_AT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_PAID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    number: int
    kind: str
    status: str
    customer: str
    subscription_id: int
    corrects_invoice_id: int
    currency: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    due_at: _timestamp_pb2.Timestamp
    subtotal: str
    tax: str
    credits_applied: str
    total: str
    tax_region: str
    tax_rate: str
    tax_inclusive: bool
    lines: _containers.RepeatedCompositeFieldContainer[InvoiceLine]
    issued_at: _timestamp_pb2.Timestamp
    payment_due_at: _timestamp_pb2.Timestamp
    paid_at: _timestamp_pb2.Timestamp
    amount_paid: str
    amount_due: str
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ..., number: _Optional[int] = ..., kind: _Optional[str] = ..., status: _Optional[str] = ..., customer: _Optional[str] = ..., subscription_id: _Optional[int] = ..., corrects_invoice_id: _Optional[int] = ..., currency: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subtotal: _Optional[str] = ..., tax: _Optional[str] = ..., credits_applied: _Optional[str] = ..., total: _Optional[str] = ..., tax_region: _Optional[str] = ..., tax_rate: _Optional[str] = ..., tax_inclusive: _Optional[bool] = ..., lines: _Optional[_Iterable[_Union[InvoiceLine, _Mapping]]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payment_due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paid_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., amount_paid: _Optional[str] = ..., amount_due: _Optional[str] = ...) -> None: ...

class GetUpcomingInvoiceRequest(_message.Message):
    __slots__ = ("customer", "at")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    customer: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, customer: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetUpcomingInvoiceResponse(_message.Message):
    __slots__ = ("invoices",)
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[Invoice]
    def __init__(self, invoices: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ...) -> None: ...

class ListInvoicesRequest(_message.Message):
    __slots__ = ("customer", "status", "page_size", "page_token", "filter")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    customer: str
    status: str
    page_size: int
    page_token: str
    filter: InvoiceFilter
    def __init__(self, customer: _Optional[str] = ..., status: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[_Union[InvoiceFilter, _Mapping]] = ...) -> None: ...

class ListInvoicesResponse(_message.Message):
    __slots__ = ("invoices", "next_page_token")
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[Invoice]
    next_page_token: str
    def __init__(self, invoices: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("id", "label")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class InvoiceActionRequest(_message.Message):
    __slots__ = ("id", "label")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class VoidInvoiceRequest(_message.Message):
    __slots__ = ("id", "reason", "reissue", "label")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REISSUE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: int
    reason: str
    reissue: bool
    label: str
    def __init__(self, id: _Optional[int] = ..., reason: _Optional[str] = ..., reissue: _Optional[bool] = ..., label: _Optional[str] = ...) -> None: ...

class CreateCreditNoteResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: Invoice
    def __init__(self, document: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class ExportInvoiceRequest(_message.Message):
    __slots__ = ("id", "format", "label")
    ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: int
    format: str
    label: str
    def __init__(self, id: _Optional[int] = ..., format: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class ExportInvoiceResponse(_message.Message):
    __slots__ = ("content_type", "content", "filename")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    content: bytes
    filename: str
    def __init__(self, content_type: _Optional[str] = ..., content: _Optional[bytes] = ..., filename: _Optional[str] = ...) -> None: ...

class RunInvoiceCycleRequest(_message.Message):
    __slots__ = ("as_of",)
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunInvoiceCycleResponse(_message.Message):
    __slots__ = ("items", "invoices_created", "already_invoiced", "seconds", "failed", "errors")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    INVOICES_CREATED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_INVOICED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    items: int
    invoices_created: int
    already_invoiced: int
    seconds: float
    failed: int
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[int] = ..., invoices_created: _Optional[int] = ..., already_invoiced: _Optional[int] = ..., seconds: _Optional[float] = ..., failed: _Optional[int] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("id", "invoice_id", "key", "amount", "applied", "to_wallet", "currency", "paid_at", "method", "reference", "created")
    ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    TO_WALLET_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PAID_AT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    id: int
    invoice_id: int
    key: str
    amount: str
    applied: str
    to_wallet: str
    currency: str
    paid_at: _timestamp_pb2.Timestamp
    method: str
    reference: str
    created: bool
    def __init__(self, id: _Optional[int] = ..., invoice_id: _Optional[int] = ..., key: _Optional[str] = ..., amount: _Optional[str] = ..., applied: _Optional[str] = ..., to_wallet: _Optional[str] = ..., currency: _Optional[str] = ..., paid_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., method: _Optional[str] = ..., reference: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...

class RecordPaymentRequest(_message.Message):
    __slots__ = ("invoice_id", "amount", "paid_at", "method", "reference", "key", "invoice_label")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAID_AT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    INVOICE_LABEL_FIELD_NUMBER: _ClassVar[int]
    invoice_id: int
    amount: str
    paid_at: _timestamp_pb2.Timestamp
    method: str
    reference: str
    key: str
    invoice_label: str
    def __init__(self, invoice_id: _Optional[int] = ..., amount: _Optional[str] = ..., paid_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., method: _Optional[str] = ..., reference: _Optional[str] = ..., key: _Optional[str] = ..., invoice_label: _Optional[str] = ...) -> None: ...

class RecordPaymentResponse(_message.Message):
    __slots__ = ("payment", "invoice")
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    payment: Payment
    invoice: Invoice
    def __init__(self, payment: _Optional[_Union[Payment, _Mapping]] = ..., invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class ListPaymentsRequest(_message.Message):
    __slots__ = ("invoice_id", "invoice_label")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_LABEL_FIELD_NUMBER: _ClassVar[int]
    invoice_id: int
    invoice_label: str
    def __init__(self, invoice_id: _Optional[int] = ..., invoice_label: _Optional[str] = ...) -> None: ...

class ListPaymentsResponse(_message.Message):
    __slots__ = ("payments",)
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[Payment]
    def __init__(self, payments: _Optional[_Iterable[_Union[Payment, _Mapping]]] = ...) -> None: ...

class MarkInvoiceUncollectibleRequest(_message.Message):
    __slots__ = ("id", "reason", "label")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: int
    reason: str
    label: str
    def __init__(self, id: _Optional[int] = ..., reason: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class BillingProfile(_message.Message):
    __slots__ = ("legal_name", "address", "tax_id", "payment_instructions", "payment_terms_days", "logo", "logo_type", "issue_zero_total", "invoice_grouping", "updated_at")
    LEGAL_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_TERMS_DAYS_FIELD_NUMBER: _ClassVar[int]
    LOGO_FIELD_NUMBER: _ClassVar[int]
    LOGO_TYPE_FIELD_NUMBER: _ClassVar[int]
    ISSUE_ZERO_TOTAL_FIELD_NUMBER: _ClassVar[int]
    INVOICE_GROUPING_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    legal_name: str
    address: Address
    tax_id: str
    payment_instructions: str
    payment_terms_days: int
    logo: bytes
    logo_type: str
    issue_zero_total: bool
    invoice_grouping: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, legal_name: _Optional[str] = ..., address: _Optional[_Union[Address, _Mapping]] = ..., tax_id: _Optional[str] = ..., payment_instructions: _Optional[str] = ..., payment_terms_days: _Optional[int] = ..., logo: _Optional[bytes] = ..., logo_type: _Optional[str] = ..., issue_zero_total: _Optional[bool] = ..., invoice_grouping: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetBillingProfileRequest(_message.Message):
    __slots__ = ("omit_logo",)
    OMIT_LOGO_FIELD_NUMBER: _ClassVar[int]
    omit_logo: bool
    def __init__(self, omit_logo: _Optional[bool] = ...) -> None: ...

class UpdateBillingProfileRequest(_message.Message):
    __slots__ = ("profile", "update_mask")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    profile: BillingProfile
    update_mask: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, profile: _Optional[_Union[BillingProfile, _Mapping]] = ..., update_mask: _Optional[_Iterable[str]] = ...) -> None: ...

class TopUpWalletRequest(_message.Message):
    __slots__ = ("top_up_id", "customer", "amount", "unit", "reference")
    TOP_UP_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    top_up_id: str
    customer: str
    amount: str
    unit: str
    reference: str
    def __init__(self, top_up_id: _Optional[str] = ..., customer: _Optional[str] = ..., amount: _Optional[str] = ..., unit: _Optional[str] = ..., reference: _Optional[str] = ...) -> None: ...

class TopUpWalletResponse(_message.Message):
    __slots__ = ("result", "balance")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    result: str
    balance: UnitAmount
    def __init__(self, result: _Optional[str] = ..., balance: _Optional[_Union[UnitAmount, _Mapping]] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("grant_id", "customer", "amount", "unit", "kind", "priority", "effective_at", "expires_at", "applies_to", "remaining")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    APPLIES_TO_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    customer: str
    amount: str
    unit: str
    kind: str
    priority: int
    effective_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    applies_to: _containers.RepeatedScalarFieldContainer[str]
    remaining: str
    def __init__(self, grant_id: _Optional[str] = ..., customer: _Optional[str] = ..., amount: _Optional[str] = ..., unit: _Optional[str] = ..., kind: _Optional[str] = ..., priority: _Optional[int] = ..., effective_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., applies_to: _Optional[_Iterable[str]] = ..., remaining: _Optional[str] = ...) -> None: ...

class CreateGrantRequest(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ...) -> None: ...

class ListGrantsRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: str
    def __init__(self, customer: _Optional[str] = ...) -> None: ...

class ListGrantsResponse(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    def __init__(self, grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ...) -> None: ...

class GetBalancesRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: str
    def __init__(self, customer: _Optional[str] = ...) -> None: ...

class UnitBalance(_message.Message):
    __slots__ = ("unit", "balance", "available", "pending_in")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    PENDING_IN_FIELD_NUMBER: _ClassVar[int]
    unit: str
    balance: str
    available: str
    pending_in: str
    def __init__(self, unit: _Optional[str] = ..., balance: _Optional[str] = ..., available: _Optional[str] = ..., pending_in: _Optional[str] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("id", "kind", "unit", "customer", "balance", "debits_pending", "credits_pending")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    DEBITS_PENDING_FIELD_NUMBER: _ClassVar[int]
    CREDITS_PENDING_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: str
    unit: str
    customer: str
    balance: str
    debits_pending: str
    credits_pending: str
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[str] = ..., unit: _Optional[str] = ..., customer: _Optional[str] = ..., balance: _Optional[str] = ..., debits_pending: _Optional[str] = ..., credits_pending: _Optional[str] = ...) -> None: ...

class GetBalancesResponse(_message.Message):
    __slots__ = ("totals", "accounts")
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    totals: _containers.RepeatedCompositeFieldContainer[UnitBalance]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    def __init__(self, totals: _Optional[_Iterable[_Union[UnitBalance, _Mapping]]] = ..., accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("id", "debit_account_id", "credit_account_id", "amount", "code", "reference", "flags", "pending_id", "timeout_s")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEBIT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    PENDING_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    id: str
    debit_account_id: int
    credit_account_id: int
    amount: str
    code: str
    reference: str
    flags: _containers.RepeatedScalarFieldContainer[str]
    pending_id: str
    timeout_s: int
    def __init__(self, id: _Optional[str] = ..., debit_account_id: _Optional[int] = ..., credit_account_id: _Optional[int] = ..., amount: _Optional[str] = ..., code: _Optional[str] = ..., reference: _Optional[str] = ..., flags: _Optional[_Iterable[str]] = ..., pending_id: _Optional[str] = ..., timeout_s: _Optional[int] = ...) -> None: ...

class CreateTransfersRequest(_message.Message):
    __slots__ = ("transfers",)
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    transfers: _containers.RepeatedCompositeFieldContainer[Transfer]
    def __init__(self, transfers: _Optional[_Iterable[_Union[Transfer, _Mapping]]] = ...) -> None: ...

class TransferResult(_message.Message):
    __slots__ = ("index", "id", "result", "field")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    result: str
    field: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., result: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class CreateTransfersResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TransferResult]
    def __init__(self, results: _Optional[_Iterable[_Union[TransferResult, _Mapping]]] = ...) -> None: ...

class ListAccountHistoryRequest(_message.Message):
    __slots__ = ("account_id", "limit")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    limit: int
    def __init__(self, account_id: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class HistoryLine(_message.Message):
    __slots__ = ("transfer_id", "change", "running_balance", "code", "at")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_BALANCE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    change: str
    running_balance: str
    code: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, transfer_id: _Optional[str] = ..., change: _Optional[str] = ..., running_balance: _Optional[str] = ..., code: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAccountHistoryResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[HistoryLine]
    def __init__(self, lines: _Optional[_Iterable[_Union[HistoryLine, _Mapping]]] = ...) -> None: ...

class ConvertCreditsRequest(_message.Message):
    __slots__ = ("conversion_id", "customer", "amount", "from_unit", "to_unit")
    CONVERSION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    FROM_UNIT_FIELD_NUMBER: _ClassVar[int]
    TO_UNIT_FIELD_NUMBER: _ClassVar[int]
    conversion_id: str
    customer: str
    amount: str
    from_unit: str
    to_unit: str
    def __init__(self, conversion_id: _Optional[str] = ..., customer: _Optional[str] = ..., amount: _Optional[str] = ..., from_unit: _Optional[str] = ..., to_unit: _Optional[str] = ...) -> None: ...

class ConvertCreditsResponse(_message.Message):
    __slots__ = ("debited", "credited", "rate", "result", "left_in_source")
    DEBITED_FIELD_NUMBER: _ClassVar[int]
    CREDITED_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    LEFT_IN_SOURCE_FIELD_NUMBER: _ClassVar[int]
    debited: UnitAmount
    credited: UnitAmount
    rate: str
    result: str
    left_in_source: UnitAmount
    def __init__(self, debited: _Optional[_Union[UnitAmount, _Mapping]] = ..., credited: _Optional[_Union[UnitAmount, _Mapping]] = ..., rate: _Optional[str] = ..., result: _Optional[str] = ..., left_in_source: _Optional[_Union[UnitAmount, _Mapping]] = ...) -> None: ...

class SimulatePriceRequest(_message.Message):
    __slots__ = ("price_json", "quantities")
    PRICE_JSON_FIELD_NUMBER: _ClassVar[int]
    QUANTITIES_FIELD_NUMBER: _ClassVar[int]
    price_json: str
    quantities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, price_json: _Optional[str] = ..., quantities: _Optional[_Iterable[str]] = ...) -> None: ...

class PricedQuantity(_message.Message):
    __slots__ = ("quantity", "amount", "amount_exact")
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_EXACT_FIELD_NUMBER: _ClassVar[int]
    quantity: str
    amount: str
    amount_exact: str
    def __init__(self, quantity: _Optional[str] = ..., amount: _Optional[str] = ..., amount_exact: _Optional[str] = ...) -> None: ...

class SimulatePriceResponse(_message.Message):
    __slots__ = ("results", "currency")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PricedQuantity]
    currency: str
    def __init__(self, results: _Optional[_Iterable[_Union[PricedQuantity, _Mapping]]] = ..., currency: _Optional[str] = ...) -> None: ...

class DomainEvent(_message.Message):
    __slots__ = ("sequence", "type", "customer", "occurred_at", "data_json")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: str
    customer: str
    occurred_at: _timestamp_pb2.Timestamp
    data_json: str
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[str] = ..., customer: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data_json: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("after_sequence", "types")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, after_sequence: _Optional[int] = ..., types: _Optional[_Iterable[str]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("after_sequence", "page_size", "types")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    page_size: int
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, after_sequence: _Optional[int] = ..., page_size: _Optional[int] = ..., types: _Optional[_Iterable[str]] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "last_sequence")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[DomainEvent]
    last_sequence: int
    def __init__(self, events: _Optional[_Iterable[_Union[DomainEvent, _Mapping]]] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class WebhookEndpoint(_message.Message):
    __slots__ = ("id", "url", "types", "secret", "enabled", "delivered_sequence", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    url: str
    types: _containers.RepeatedScalarFieldContainer[str]
    secret: str
    enabled: bool
    delivered_sequence: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., url: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., secret: _Optional[str] = ..., enabled: _Optional[bool] = ..., delivered_sequence: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateWebhookEndpointRequest(_message.Message):
    __slots__ = ("url", "types", "after_sequence")
    URL_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    url: str
    types: _containers.RepeatedScalarFieldContainer[str]
    after_sequence: int
    def __init__(self, url: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class ListWebhookEndpointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWebhookEndpointsResponse(_message.Message):
    __slots__ = ("endpoints",)
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[WebhookEndpoint]
    def __init__(self, endpoints: _Optional[_Iterable[_Union[WebhookEndpoint, _Mapping]]] = ...) -> None: ...

class DisableWebhookEndpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("id", "endpoint_id", "sequence", "type", "attempt", "status", "http_status", "error", "attempted_at", "next_attempt_at", "replay")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    id: int
    endpoint_id: int
    sequence: int
    type: str
    attempt: int
    status: str
    http_status: int
    error: str
    attempted_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    replay: bool
    def __init__(self, id: _Optional[int] = ..., endpoint_id: _Optional[int] = ..., sequence: _Optional[int] = ..., type: _Optional[str] = ..., attempt: _Optional[int] = ..., status: _Optional[str] = ..., http_status: _Optional[int] = ..., error: _Optional[str] = ..., attempted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replay: _Optional[bool] = ...) -> None: ...

class ListWebhookDeliveriesRequest(_message.Message):
    __slots__ = ("endpoint_id", "page_size", "page_token")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: int
    page_size: int
    page_token: str
    def __init__(self, endpoint_id: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWebhookDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReplayWebhookEventsRequest(_message.Message):
    __slots__ = ("endpoint_id", "after_sequence", "to_sequence")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TO_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: int
    after_sequence: int
    to_sequence: int
    def __init__(self, endpoint_id: _Optional[int] = ..., after_sequence: _Optional[int] = ..., to_sequence: _Optional[int] = ...) -> None: ...

class ReplayWebhookEventsResponse(_message.Message):
    __slots__ = ("queued",)
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    queued: int
    def __init__(self, queued: _Optional[int] = ...) -> None: ...

class Coupon(_message.Message):
    __slots__ = ("code", "name", "kind", "percent", "amount", "currency", "duration", "periods", "applies_to", "redeem_by", "max_redemptions", "times_applied", "created_at")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    APPLIES_TO_FIELD_NUMBER: _ClassVar[int]
    REDEEM_BY_FIELD_NUMBER: _ClassVar[int]
    MAX_REDEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    kind: str
    percent: str
    amount: str
    currency: str
    duration: str
    periods: int
    applies_to: _containers.RepeatedScalarFieldContainer[str]
    redeem_by: _timestamp_pb2.Timestamp
    max_redemptions: int
    times_applied: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., percent: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., duration: _Optional[str] = ..., periods: _Optional[int] = ..., applies_to: _Optional[_Iterable[str]] = ..., redeem_by: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_redemptions: _Optional[int] = ..., times_applied: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCouponRequest(_message.Message):
    __slots__ = ("coupon",)
    COUPON_FIELD_NUMBER: _ClassVar[int]
    coupon: Coupon
    def __init__(self, coupon: _Optional[_Union[Coupon, _Mapping]] = ...) -> None: ...

class ListCouponsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCouponsResponse(_message.Message):
    __slots__ = ("coupons", "next_page_token")
    COUPONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    coupons: _containers.RepeatedCompositeFieldContainer[Coupon]
    next_page_token: str
    def __init__(self, coupons: _Optional[_Iterable[_Union[Coupon, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Discount(_message.Message):
    __slots__ = ("id", "coupon", "customer", "subscription_id", "starts_at", "removed_at", "periods_used", "periods_remaining", "status", "terms", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    COUPON_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_AT_FIELD_NUMBER: _ClassVar[int]
    PERIODS_USED_FIELD_NUMBER: _ClassVar[int]
    PERIODS_REMAINING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    coupon: str
    customer: str
    subscription_id: int
    starts_at: _timestamp_pb2.Timestamp
    removed_at: _timestamp_pb2.Timestamp
    periods_used: int
    periods_remaining: int
    status: str
    terms: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., coupon: _Optional[str] = ..., customer: _Optional[str] = ..., subscription_id: _Optional[int] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., removed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., periods_used: _Optional[int] = ..., periods_remaining: _Optional[int] = ..., status: _Optional[str] = ..., terms: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ApplyCouponRequest(_message.Message):
    __slots__ = ("coupon", "customer", "subscription_id", "starts_at")
    COUPON_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    coupon: str
    customer: str
    subscription_id: int
    starts_at: _timestamp_pb2.Timestamp
    def __init__(self, coupon: _Optional[str] = ..., customer: _Optional[str] = ..., subscription_id: _Optional[int] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDiscountsRequest(_message.Message):
    __slots__ = ("customer", "subscription_id", "include_removed", "page_size", "page_token")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REMOVED_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customer: str
    subscription_id: int
    include_removed: bool
    page_size: int
    page_token: str
    def __init__(self, customer: _Optional[str] = ..., subscription_id: _Optional[int] = ..., include_removed: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDiscountsResponse(_message.Message):
    __slots__ = ("discounts", "next_page_token")
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    discounts: _containers.RepeatedCompositeFieldContainer[Discount]
    next_page_token: str
    def __init__(self, discounts: _Optional[_Iterable[_Union[Discount, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RemoveDiscountRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("id", "customer", "kind", "meter", "unit", "threshold", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    customer: str
    kind: str
    meter: str
    unit: str
    threshold: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., customer: _Optional[str] = ..., kind: _Optional[str] = ..., meter: _Optional[str] = ..., unit: _Optional[str] = ..., threshold: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateAlertRequest(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: str
    def __init__(self, customer: _Optional[str] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class DeleteAlertRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class DeleteAlertResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckEntitlementRequest(_message.Message):
    __slots__ = ("customer", "feature", "requested")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    customer: str
    feature: str
    requested: str
    def __init__(self, customer: _Optional[str] = ..., feature: _Optional[str] = ..., requested: _Optional[str] = ...) -> None: ...

class Entitlement(_message.Message):
    __slots__ = ("feature", "allowed", "kind", "granted", "used", "remaining", "reason", "resets_at")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    feature: str
    allowed: bool
    kind: str
    granted: str
    used: str
    remaining: str
    reason: str
    resets_at: _timestamp_pb2.Timestamp
    def __init__(self, feature: _Optional[str] = ..., allowed: _Optional[bool] = ..., kind: _Optional[str] = ..., granted: _Optional[str] = ..., used: _Optional[str] = ..., remaining: _Optional[str] = ..., reason: _Optional[str] = ..., resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListEntitlementsRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: str
    def __init__(self, customer: _Optional[str] = ...) -> None: ...

class ListEntitlementsResponse(_message.Message):
    __slots__ = ("entitlements",)
    ENTITLEMENTS_FIELD_NUMBER: _ClassVar[int]
    entitlements: _containers.RepeatedCompositeFieldContainer[Entitlement]
    def __init__(self, entitlements: _Optional[_Iterable[_Union[Entitlement, _Mapping]]] = ...) -> None: ...

class InvoiceFilter(_message.Message):
    __slots__ = ("customer", "status", "plan", "start", "end", "date")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    customer: str
    status: str
    plan: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    date: str
    def __init__(self, customer: _Optional[str] = ..., status: _Optional[str] = ..., plan: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., date: _Optional[str] = ...) -> None: ...

class BulkInvoicesRequest(_message.Message):
    __slots__ = ("filter", "limit", "page_token", "dry_run")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    filter: InvoiceFilter
    limit: int
    page_token: str
    dry_run: bool
    def __init__(self, filter: _Optional[_Union[InvoiceFilter, _Mapping]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class BulkVoidInvoicesRequest(_message.Message):
    __slots__ = ("filter", "limit", "page_token", "dry_run", "reason", "reissue")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REISSUE_FIELD_NUMBER: _ClassVar[int]
    filter: InvoiceFilter
    limit: int
    page_token: str
    dry_run: bool
    reason: str
    reissue: bool
    def __init__(self, filter: _Optional[_Union[InvoiceFilter, _Mapping]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., dry_run: _Optional[bool] = ..., reason: _Optional[str] = ..., reissue: _Optional[bool] = ...) -> None: ...

class BulkInvoicesResponse(_message.Message):
    __slots__ = ("action", "dry_run", "applies_to", "examined", "done", "skipped", "failed", "errors", "done_ids", "next_page_token")
    class SkippedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    APPLIES_TO_FIELD_NUMBER: _ClassVar[int]
    EXAMINED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    DONE_IDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    action: str
    dry_run: bool
    applies_to: _containers.RepeatedScalarFieldContainer[str]
    examined: int
    done: int
    skipped: _containers.ScalarMap[str, int]
    failed: int
    errors: _containers.RepeatedScalarFieldContainer[str]
    done_ids: _containers.RepeatedScalarFieldContainer[int]
    next_page_token: str
    def __init__(self, action: _Optional[str] = ..., dry_run: _Optional[bool] = ..., applies_to: _Optional[_Iterable[str]] = ..., examined: _Optional[int] = ..., done: _Optional[int] = ..., skipped: _Optional[_Mapping[str, int]] = ..., failed: _Optional[int] = ..., errors: _Optional[_Iterable[str]] = ..., done_ids: _Optional[_Iterable[int]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PointsUnit(_message.Message):
    __slots__ = ("code", "scale", "name")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    code: str
    scale: int
    name: str
    def __init__(self, code: _Optional[str] = ..., scale: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class DefinePointsUnitRequest(_message.Message):
    __slots__ = ("code", "scale", "name")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    code: str
    scale: int
    name: str
    def __init__(self, code: _Optional[str] = ..., scale: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class ListPointsUnitsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPointsUnitsResponse(_message.Message):
    __slots__ = ("units", "next_page_token")
    UNITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    units: _containers.RepeatedCompositeFieldContainer[PointsUnit]
    next_page_token: str
    def __init__(self, units: _Optional[_Iterable[_Union[PointsUnit, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ConversionRate(_message.Message):
    __slots__ = ("currency", "points_unit", "rate", "rounding", "valid_from", "valid_to")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    POINTS_UNIT_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_FIELD_NUMBER: _ClassVar[int]
    currency: str
    points_unit: str
    rate: str
    rounding: str
    valid_from: _timestamp_pb2.Timestamp
    valid_to: _timestamp_pb2.Timestamp
    def __init__(self, currency: _Optional[str] = ..., points_unit: _Optional[str] = ..., rate: _Optional[str] = ..., rounding: _Optional[str] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetConversionRateRequest(_message.Message):
    __slots__ = ("currency", "points_unit", "rate", "valid_from", "valid_to", "rounding")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    POINTS_UNIT_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_FIELD_NUMBER: _ClassVar[int]
    currency: str
    points_unit: str
    rate: str
    valid_from: _timestamp_pb2.Timestamp
    valid_to: _timestamp_pb2.Timestamp
    rounding: str
    def __init__(self, currency: _Optional[str] = ..., points_unit: _Optional[str] = ..., rate: _Optional[str] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rounding: _Optional[str] = ...) -> None: ...

class ListConversionRatesRequest(_message.Message):
    __slots__ = ("currency", "points_unit", "page_size", "page_token")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    POINTS_UNIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    currency: str
    points_unit: str
    page_size: int
    page_token: str
    def __init__(self, currency: _Optional[str] = ..., points_unit: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConversionRatesResponse(_message.Message):
    __slots__ = ("rates", "next_page_token")
    RATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rates: _containers.RepeatedCompositeFieldContainer[ConversionRate]
    next_page_token: str
    def __init__(self, rates: _Optional[_Iterable[_Union[ConversionRate, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AccruePointsRequest(_message.Message):
    __slots__ = ("as_of", "since")
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    as_of: _timestamp_pb2.Timestamp
    since: _timestamp_pb2.Timestamp
    def __init__(self, as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PointsCredit(_message.Message):
    __slots__ = ("customer", "subscription_id", "plan", "plan_version", "rule", "meter", "unit", "period_start", "period_end", "through", "quantity", "points", "earned", "capped", "transfer_id")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    THROUGH_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    EARNED_FIELD_NUMBER: _ClassVar[int]
    CAPPED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    customer: str
    subscription_id: int
    plan: str
    plan_version: int
    rule: str
    meter: str
    unit: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    through: _timestamp_pb2.Timestamp
    quantity: str
    points: str
    earned: str
    capped: bool
    transfer_id: str
    def __init__(self, customer: _Optional[str] = ..., subscription_id: _Optional[int] = ..., plan: _Optional[str] = ..., plan_version: _Optional[int] = ..., rule: _Optional[str] = ..., meter: _Optional[str] = ..., unit: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., through: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quantity: _Optional[str] = ..., points: _Optional[str] = ..., earned: _Optional[str] = ..., capped: _Optional[bool] = ..., transfer_id: _Optional[str] = ...) -> None: ...

class AccruePointsResponse(_message.Message):
    __slots__ = ("through", "checked", "credits", "credited", "totals", "problems")
    THROUGH_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    CREDITED_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    through: _timestamp_pb2.Timestamp
    checked: int
    credits: _containers.RepeatedCompositeFieldContainer[PointsCredit]
    credited: int
    totals: _containers.RepeatedCompositeFieldContainer[UnitAmount]
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, through: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., checked: _Optional[int] = ..., credits: _Optional[_Iterable[_Union[PointsCredit, _Mapping]]] = ..., credited: _Optional[int] = ..., totals: _Optional[_Iterable[_Union[UnitAmount, _Mapping]]] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class SimulatePlanRequest(_message.Message):
    __slots__ = ("plan_json", "plan", "start", "end", "current_plan", "more_than_pct", "limit")
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PLAN_FIELD_NUMBER: _ClassVar[int]
    MORE_THAN_PCT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    plan_json: str
    plan: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    current_plan: str
    more_than_pct: str
    limit: int
    def __init__(self, plan_json: _Optional[str] = ..., plan: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_plan: _Optional[str] = ..., more_than_pct: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class SimulatedCustomer(_message.Message):
    __slots__ = ("customer", "plan", "current", "simulated", "difference", "pct")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    PCT_FIELD_NUMBER: _ClassVar[int]
    customer: str
    plan: str
    current: str
    simulated: str
    difference: str
    pct: str
    def __init__(self, customer: _Optional[str] = ..., plan: _Optional[str] = ..., current: _Optional[str] = ..., simulated: _Optional[str] = ..., difference: _Optional[str] = ..., pct: _Optional[str] = ...) -> None: ...

class SimulatedPlanTotal(_message.Message):
    __slots__ = ("plan", "customers", "current", "simulated", "difference", "pct")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    PCT_FIELD_NUMBER: _ClassVar[int]
    plan: str
    customers: int
    current: str
    simulated: str
    difference: str
    pct: str
    def __init__(self, plan: _Optional[str] = ..., customers: _Optional[int] = ..., current: _Optional[str] = ..., simulated: _Optional[str] = ..., difference: _Optional[str] = ..., pct: _Optional[str] = ...) -> None: ...

class ChangeBucket(_message.Message):
    __slots__ = ("label", "customers")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    label: str
    customers: int
    def __init__(self, label: _Optional[str] = ..., customers: _Optional[int] = ...) -> None: ...

class SimulatePlanResponse(_message.Message):
    __slots__ = ("candidate", "currency", "start", "end", "plans", "current", "simulated", "difference", "distribution", "more_than", "more_than_total", "customers", "customers_total")
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    MORE_THAN_FIELD_NUMBER: _ClassVar[int]
    MORE_THAN_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    candidate: str
    currency: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    plans: _containers.RepeatedCompositeFieldContainer[SimulatedPlanTotal]
    current: str
    simulated: str
    difference: str
    distribution: _containers.RepeatedCompositeFieldContainer[ChangeBucket]
    more_than: _containers.RepeatedCompositeFieldContainer[SimulatedCustomer]
    more_than_total: int
    customers: _containers.RepeatedCompositeFieldContainer[SimulatedCustomer]
    customers_total: int
    def __init__(self, candidate: _Optional[str] = ..., currency: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plans: _Optional[_Iterable[_Union[SimulatedPlanTotal, _Mapping]]] = ..., current: _Optional[str] = ..., simulated: _Optional[str] = ..., difference: _Optional[str] = ..., distribution: _Optional[_Iterable[_Union[ChangeBucket, _Mapping]]] = ..., more_than: _Optional[_Iterable[_Union[SimulatedCustomer, _Mapping]]] = ..., more_than_total: _Optional[int] = ..., customers: _Optional[_Iterable[_Union[SimulatedCustomer, _Mapping]]] = ..., customers_total: _Optional[int] = ...) -> None: ...

class GetRevenueLeakageRequest(_message.Message):
    __slots__ = ("start", "end", "limit")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    limit: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class LeakageCategory(_message.Message):
    __slots__ = ("category", "events", "customers", "meters")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    category: str
    events: int
    customers: int
    meters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, category: _Optional[str] = ..., events: _Optional[int] = ..., customers: _Optional[int] = ..., meters: _Optional[_Iterable[str]] = ...) -> None: ...

class LeakageRow(_message.Message):
    __slots__ = ("category", "customer", "meter", "events", "quantity")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    category: str
    customer: str
    meter: str
    events: int
    quantity: str
    def __init__(self, category: _Optional[str] = ..., customer: _Optional[str] = ..., meter: _Optional[str] = ..., events: _Optional[int] = ..., quantity: _Optional[str] = ...) -> None: ...

class RevenueLeakage(_message.Message):
    __slots__ = ("start", "end", "categories", "rows", "rows_total", "unbilled_events", "counted_events")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNBILLED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    COUNTED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    categories: _containers.RepeatedCompositeFieldContainer[LeakageCategory]
    rows: _containers.RepeatedCompositeFieldContainer[LeakageRow]
    rows_total: int
    unbilled_events: int
    counted_events: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., categories: _Optional[_Iterable[_Union[LeakageCategory, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[LeakageRow, _Mapping]]] = ..., rows_total: _Optional[int] = ..., unbilled_events: _Optional[int] = ..., counted_events: _Optional[int] = ...) -> None: ...

class Dispute(_message.Message):
    __slots__ = ("id", "invoice_id", "invoice_number", "line", "charge", "customer", "currency", "line_amount", "reason", "status", "opened_by", "opened_at", "resolved_by", "resolved_at", "note", "credit_amount", "credit_note_id", "credit_note_number")
    ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    CHARGE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LINE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OPENED_BY_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_NOTE_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_NOTE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    id: int
    invoice_id: int
    invoice_number: str
    line: int
    charge: str
    customer: str
    currency: str
    line_amount: str
    reason: str
    status: str
    opened_by: str
    opened_at: _timestamp_pb2.Timestamp
    resolved_by: str
    resolved_at: _timestamp_pb2.Timestamp
    note: str
    credit_amount: str
    credit_note_id: int
    credit_note_number: str
    def __init__(self, id: _Optional[int] = ..., invoice_id: _Optional[int] = ..., invoice_number: _Optional[str] = ..., line: _Optional[int] = ..., charge: _Optional[str] = ..., customer: _Optional[str] = ..., currency: _Optional[str] = ..., line_amount: _Optional[str] = ..., reason: _Optional[str] = ..., status: _Optional[str] = ..., opened_by: _Optional[str] = ..., opened_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_by: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ..., credit_amount: _Optional[str] = ..., credit_note_id: _Optional[int] = ..., credit_note_number: _Optional[str] = ...) -> None: ...

class OpenDisputeRequest(_message.Message):
    __slots__ = ("invoice_id", "line", "reason", "customer", "invoice_label")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    INVOICE_LABEL_FIELD_NUMBER: _ClassVar[int]
    invoice_id: int
    line: int
    reason: str
    customer: str
    invoice_label: str
    def __init__(self, invoice_id: _Optional[int] = ..., line: _Optional[int] = ..., reason: _Optional[str] = ..., customer: _Optional[str] = ..., invoice_label: _Optional[str] = ...) -> None: ...

class ListDisputesRequest(_message.Message):
    __slots__ = ("status", "customer", "invoice_id", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: str
    customer: str
    invoice_id: int
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[str] = ..., customer: _Optional[str] = ..., invoice_id: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDisputesResponse(_message.Message):
    __slots__ = ("disputes", "next_page_token")
    DISPUTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    disputes: _containers.RepeatedCompositeFieldContainer[Dispute]
    next_page_token: str
    def __init__(self, disputes: _Optional[_Iterable[_Union[Dispute, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DisputeCredit(_message.Message):
    __slots__ = ("amount", "note")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    amount: str
    note: str
    def __init__(self, amount: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class DisputeRejection(_message.Message):
    __slots__ = ("note",)
    NOTE_FIELD_NUMBER: _ClassVar[int]
    note: str
    def __init__(self, note: _Optional[str] = ...) -> None: ...

class ResolveDisputeRequest(_message.Message):
    __slots__ = ("id", "credit", "reject")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    REJECT_FIELD_NUMBER: _ClassVar[int]
    id: int
    credit: DisputeCredit
    reject: DisputeRejection
    def __init__(self, id: _Optional[int] = ..., credit: _Optional[_Union[DisputeCredit, _Mapping]] = ..., reject: _Optional[_Union[DisputeRejection, _Mapping]] = ...) -> None: ...

class ResolveDisputeResponse(_message.Message):
    __slots__ = ("dispute", "credit_note", "changed")
    DISPUTE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_NOTE_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    dispute: Dispute
    credit_note: Invoice
    changed: bool
    def __init__(self, dispute: _Optional[_Union[Dispute, _Mapping]] = ..., credit_note: _Optional[_Union[Invoice, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class CreatePortalSessionRequest(_message.Message):
    __slots__ = ("customer", "ttl_seconds", "return_url")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETURN_URL_FIELD_NUMBER: _ClassVar[int]
    customer: str
    ttl_seconds: int
    return_url: str
    def __init__(self, customer: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., return_url: _Optional[str] = ...) -> None: ...

class PortalSession(_message.Message):
    __slots__ = ("path", "expires_at", "customer")
    PATH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    path: str
    expires_at: _timestamp_pb2.Timestamp
    customer: str
    def __init__(self, path: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., customer: _Optional[str] = ...) -> None: ...

class RevokePortalLinksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RevokePortalLinksResponse(_message.Message):
    __slots__ = ("key_version", "rotated_at")
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROTATED_AT_FIELD_NUMBER: _ClassVar[int]
    key_version: int
    rotated_at: _timestamp_pb2.Timestamp
    def __init__(self, key_version: _Optional[int] = ..., rotated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
