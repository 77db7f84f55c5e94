"""Events out: the outbox written in the transaction of each change, and webhooks that deliver it.

This module is the package's API: import from here; the modules behind it are private.
"""

from invoicing.events._outbox import DomainEvent, NewEvent, check_patterns, emit, head, read_events
from invoicing.events._webhook import (
    URL_MAX,
    Delivery,
    Dispatcher,
    Endpoint,
    RetryPolicy,
    check_url,
    create_endpoint,
    deliver_once,
    disable_endpoint,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    replay,
    signature,
    verify_signature,
)

__all__ = [
    "URL_MAX",
    "Delivery",
    "Dispatcher",
    "DomainEvent",
    "Endpoint",
    "NewEvent",
    "RetryPolicy",
    "check_patterns",
    "check_url",
    "create_endpoint",
    "deliver_once",
    "disable_endpoint",
    "emit",
    "get_endpoint",
    "head",
    "list_deliveries",
    "list_endpoints",
    "read_events",
    "replay",
    "signature",
    "verify_signature",
]
