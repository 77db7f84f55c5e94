"""Events out: WatchEvents and ListEvents over the outbox, webhooks, alerts.

WatchEvents reads the outbox from the client's cursor, then follows it: it polls every
`events_poll_s` (100 ms by default), or at once when something in this process says the data
changed (`ApiBase.changed`, or an alert firing). The outbox sequence is gapless and in commit
order, so a cursor that only moves to the last sequence read never skips or repeats an event,
whichever way the stream ends: a client resumes with the last sequence it received.

The webhook dispatcher and the alert evaluator are background workers (`setup_events`), started
and stopped with the server; their intervals and the retry schedule are `TALLY_PLATFORM__*`
settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator

from invoicing.events import (
    Delivery,
    Dispatcher,
    DomainEvent,
    Endpoint,
    RetryPolicy,
    check_patterns,
    create_endpoint,
    disable_endpoint,
    list_deliveries,
    list_endpoints,
    read_events,
    replay,
)
from invoicing.insight import Alert, Crossing, create_alert, delete_alert, evaluate_alerts, list_alerts
from invoicing.subscriptions import apply_scheduled
from metering.errors import InvalidArgument, Unavailable
from metering.tenant import Principal
from tally.api.base import (
    ADMIN,
    READ,
    ApiBase,
    Context,
    Periodic,
    Worker,
    decimal_str,
    encode_token,
    int_token,
    now,
    page_size,
    positive_id,
    rpc,
    stream_rpc,
    timestamp,
)
from tally.settings import PlatformSettings, Settings
from tally.v1 import billing_pb2 as pb

#: Events read per outbox query while catching up.
WATCH_BATCH = 500


class Waker:
    """Wakes every waiting WatchEvents stream (each an asyncio.Event on the server's loop) from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiting[event] = asyncio.get_running_loop()
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiting.pop(event, None)

    def wake(self) -> None:
        with self._lock:
            waiting = list(self._waiting.items())
        for event, loop in waiting:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting any more
                loop.call_soon_threadsafe(event.set)


def event_pb(e: DomainEvent) -> pb.DomainEvent:
    return pb.DomainEvent(
        sequence=e.sequence,
        type=e.type,
        customer=e.customer,
        occurred_at=timestamp(e.occurred_at),
        data_json=json.dumps(e.data, sort_keys=True, separators=(",", ":")),
    )


def endpoint_pb(e: Endpoint, show_secret: bool = False) -> pb.WebhookEndpoint:
    return pb.WebhookEndpoint(
        id=e.id,
        url=e.url,
        types=list(e.types),
        secret=e.secret if show_secret else "",
        enabled=e.enabled,
        delivered_sequence=e.delivered_sequence,
        created_at=timestamp(e.created_at),
    )


def delivery_pb(d: Delivery) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
        id=d.id,
        endpoint_id=d.endpoint_id,
        sequence=d.sequence,
        type=d.type,
        attempt=d.attempt,
        status=d.status,
        http_status=d.http_status,
        error=d.error,
        attempted_at=timestamp(d.attempted_at),
        next_attempt_at=timestamp(d.next_attempt_at),
        replay=d.replay,
    )


def alert_pb(a: Alert) -> pb.Alert:
    return pb.Alert(
        id=a.id,
        customer=a.customer,
        kind=a.kind,
        meter=a.meter,
        unit=a.unit,
        threshold=decimal_str(a.threshold),
        created_at=timestamp(a.created_at),
    )


def _cursor(value: int, field: str = "after_sequence") -> int:
    if not 0 <= value <= 2**63 - 1:
        raise InvalidArgument(f"{field} must be 0 (from the start) or a sequence received earlier, got {value}")
    return value


def retry_policy(platform: PlatformSettings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=platform.webhook_max_attempts,
        backoff_base_s=platform.webhook_backoff_base_s,
        backoff_max_s=platform.webhook_backoff_max_s,
        timeout_s=platform.webhook_timeout_s,
        parallel=platform.webhook_parallel,
        block_private=platform.webhook_block_private,
    )


class EventRpcs(ApiBase):
    settings: Settings
    platform: PlatformSettings
    event_waker: Waker
    webhook_dispatcher: Dispatcher
    alert_evaluator: Periodic

    def setup_events(self) -> list[Worker]:
        """The webhook dispatcher and the alert evaluator; watchers are woken by in-process changes."""
        self.platform = self.settings.platform
        self.event_waker = Waker()
        self.watch_closed = False
        self.webhook_dispatcher = Dispatcher(
            self.engine, retry_policy(self.platform), self.platform.webhook_interval_s
        )
        self.alert_evaluator = Periodic(
            "alert-evaluator",
            self.platform.alert_interval_s,
            lambda now: evaluate_alerts(self.engine, now),
            lambda fired: self._alerts_fired(fired) if fired else None,
        )
        # Scheduled subscription changes (trial end, change or cancellation at period end) are recorded and
        # announced when their instant passes, within one interval.
        scheduler = Periodic(
            "subscription-scheduler",
            self.platform.alert_interval_s,
            lambda now: apply_scheduled(self.engine, now),
            lambda moved: self._alerts_fired([]) if moved else None,
        )
        self.listeners.append(self._changed)
        return [self.webhook_dispatcher, self.alert_evaluator, scheduler]

    def close_watches(self) -> None:
        """Shutdown: every WatchEvents stream ends now with UNAVAILABLE and its resume cursor."""
        self.watch_closed = True
        self.event_waker.wake()

    def _changed(self, _tenant_id: int, _customer: str) -> None:
        # Changes that notify listeners usually emitted an event in the same transaction.
        self.event_waker.wake()
        self.webhook_dispatcher.wake()

    def _alerts_fired(self, _fired: list[Crossing]) -> None:
        """New events are in the outbox: wake the watchers and the dispatcher."""
        self.event_waker.wake()
        self.webhook_dispatcher.wake()

    # --- the stream ------------------------------------------------------------------------------------------
    @stream_rpc(READ)
    async def WatchEvents(
        self, principal: Principal, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.DomainEvent]:
        types = check_patterns(list(request.types))
        cursor = _cursor(request.after_sequence)
        wake = self.event_waker.subscribe()
        try:
            while True:
                if self.watch_closed:
                    raise Unavailable(f"server is shutting down; resume with after_sequence={cursor}")
                wake.clear()  # before reading: a change committed after the read wakes the wait below
                events, last = await self.run(read_events, self.engine, principal.tenant_id, cursor, WATCH_BATCH, types)
                for e in events:
                    yield event_pb(e)
                caught_up = last - cursor < WATCH_BATCH  # sequences are gapless: rows read = last - cursor
                cursor = last
                if caught_up:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self.platform.events_poll_s)
        finally:
            self.event_waker.unsubscribe(wake)

    @rpc(READ)
    def ListEvents(self, principal: Principal, request: pb.ListEventsRequest) -> pb.ListEventsResponse:
        types = check_patterns(list(request.types))
        size = page_size(request.page_size)
        events, last = read_events(self.engine, principal.tenant_id, _cursor(request.after_sequence), size, types)
        return pb.ListEventsResponse(events=[event_pb(e) for e in events], last_sequence=last)

    # --- webhooks --------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def CreateWebhookEndpoint(
        self, principal: Principal, request: pb.CreateWebhookEndpointRequest
    ) -> pb.WebhookEndpoint:
        endpoint = create_endpoint(
            self.engine, principal.tenant_id, request.url, list(request.types), request.after_sequence, now(),
            block_private=self.platform.webhook_block_private,
        )  # fmt: skip
        return endpoint_pb(endpoint, show_secret=True)

    @rpc(READ)
    def ListWebhookEndpoints(
        self, principal: Principal, request: pb.ListWebhookEndpointsRequest
    ) -> pb.ListWebhookEndpointsResponse:
        return pb.ListWebhookEndpointsResponse(
            endpoints=[endpoint_pb(e) for e in list_endpoints(self.engine, principal.tenant_id)]
        )

    @rpc(ADMIN)
    def DisableWebhookEndpoint(
        self, principal: Principal, request: pb.DisableWebhookEndpointRequest
    ) -> pb.WebhookEndpoint:
        endpoint_id = positive_id(request.id)
        return endpoint_pb(disable_endpoint(self.engine, principal.tenant_id, endpoint_id))

    @rpc(READ)
    def ListWebhookDeliveries(
        self, principal: Principal, request: pb.ListWebhookDeliveriesRequest
    ) -> pb.ListWebhookDeliveriesResponse:
        endpoint_id = positive_id(request.endpoint_id, "endpoint_id")
        size = page_size(request.page_size)
        before = int_token(request.page_token)
        page, next_before = list_deliveries(self.engine, principal.tenant_id, endpoint_id, before, size)
        return pb.ListWebhookDeliveriesResponse(
            deliveries=[delivery_pb(d) for d in page],
            next_page_token="" if next_before is None else encode_token(next_before),
        )

    @rpc(ADMIN)
    def ReplayWebhookEvents(
        self, principal: Principal, request: pb.ReplayWebhookEventsRequest
    ) -> pb.ReplayWebhookEventsResponse:
        endpoint_id = positive_id(request.endpoint_id, "endpoint_id")
        queued = replay(
            self.engine, principal.tenant_id, endpoint_id, request.after_sequence, request.to_sequence, now()
        )
        self.webhook_dispatcher.wake()
        return pb.ReplayWebhookEventsResponse(queued=queued)

    # --- alerts ----------------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def CreateAlert(self, principal: Principal, request: pb.CreateAlertRequest) -> pb.Alert:
        if not request.HasField("alert"):
            raise InvalidArgument("alert is required: customer, kind, threshold and a meter or unit")
        a = request.alert
        created = create_alert(
            self.engine, principal.tenant_id, a.customer, a.kind, a.threshold, now(), meter=a.meter, unit=a.unit
        )
        return alert_pb(created)

    @rpc(READ)
    def ListAlerts(self, principal: Principal, request: pb.ListAlertsRequest) -> pb.ListAlertsResponse:
        found = list_alerts(self.engine, principal.tenant_id, request.customer)
        return pb.ListAlertsResponse(alerts=[alert_pb(a) for a in found])

    @rpc(ADMIN)
    def DeleteAlert(self, principal: Principal, request: pb.DeleteAlertRequest) -> pb.DeleteAlertResponse:
        delete_alert(self.engine, principal.tenant_id, positive_id(request.id))
        return pb.DeleteAlertResponse()
