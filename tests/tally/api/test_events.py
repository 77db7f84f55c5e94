"""Events out over gRPC: WatchEvents and ListEvents, webhook endpoints and deliveries, alerts."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.events import NewEvent, emit, verify_signature
from tests.invoicing.conftest import write_events
from tests.invoicing.test_webhook import Receiver, receiver  # noqa: F401 - the fixture
from tests.tally.api.conftest import Api, pb


@pytest.fixture(autouse=True)
def fast_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's workers in milliseconds (autouse fixtures run before `api` starts the server)."""
    for name, value in {
        "EVENTS_POLL_S": "0.05", "WEBHOOK_INTERVAL_S": "0.05", "WEBHOOK_BACKOFF_BASE_S": "0.05",
        "WEBHOOK_BACKOFF_MAX_S": "0.2", "WEBHOOK_MAX_ATTEMPTS": "3", "ALERT_INTERVAL_S": "0.1",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"TALLY_PLATFORM__{name}", value)


def publish(engine: Engine, tenant_id: int, types: list[str], customer: str = "cus_1") -> list[int]:
    out = []
    for t in types:
        with engine.begin() as conn:
            out += emit(conn, tenant_id, [NewEvent(t, customer, {"total": "12.50"})])
    return out


class Watch:
    """A WatchEvents stream read by a background thread, so a test can wait with a timeout."""

    def __init__(self, api: Api, after: int = 0, types: tuple[str, ...] = (), key: str | None = None) -> None:
        request = pb.WatchEventsRequest(after_sequence=after, types=list(types))
        self.call = api.stub.WatchEvents(request, metadata=(("authorization", f"Bearer {key or api.admin}"),))
        self.items: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.items.put(event)
        except grpc.RpcError as exc:
            self.items.put(exc)

    def take(self, n: int, timeout: float = 20) -> list[pb.DomainEvent]:
        out: list[pb.DomainEvent] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            item = self.items.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(item, grpc.RpcError):
                raise item
            out.append(item)
        return out

    def quiet(self, seconds: float = 0.4) -> bool:
        try:
            item = self.items.get(timeout=seconds)
        except queue.Empty:
            return True
        self.items.put(item)
        return False

    def error(self, timeout: float = 10) -> grpc.RpcError:
        item = self.items.get(timeout=timeout)
        assert isinstance(item, grpc.RpcError), f"expected an error, got {item}"
        return item

    def cancel(self) -> None:
        self.call.cancel()
        self.thread.join(timeout=10)


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    opened: list[Watch] = []
    yield opened
    for w in opened:
        w.cancel()


def wait_for(check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# --- ListEvents / WatchEvents ----------------------------------------------------------------------------------
def test_list_events_pages_filters_and_is_tenant_scoped(api: Api) -> None:
    types = ["invoice.created", "subscription.created", "invoice.paid", "wallet.balance_low", "invoice.voided"]
    publish(api.engine, api.tenant.tenant_id, types)
    page = api.call("ListEvents", pb.ListEventsRequest(page_size=2), key=api.read)
    assert [(e.sequence, e.type) for e in page.events] == [(1, "invoice.created"), (2, "subscription.created")]
    assert page.last_sequence == 2
    assert json.loads(page.events[0].data_json) == {"total": "12.50"} and page.events[0].customer == "cus_1"
    assert page.events[0].occurred_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    rest = api.call("ListEvents", pb.ListEventsRequest(after_sequence=2, types=["invoice."]))
    assert [e.sequence for e in rest.events] == [3, 5] and rest.last_sequence == 5
    assert api.call("ListEvents", pb.ListEventsRequest(after_sequence=5)).last_sequence == 5
    assert api.call("ListEvents", pb.ListEventsRequest(), key=api.other.key).events == []


def test_list_events_refuses_bad_input(api: Api) -> None:
    for request, fragment in [
        (pb.ListEventsRequest(types=["invoice.", "bogus"]), "types[1]: 'bogus' is not an event type"),
        (pb.ListEventsRequest(page_size=5000), "page_size must be 0..1000"),
        (pb.ListEventsRequest(after_sequence=-1), "after_sequence must be 0"),
    ]:
        err = api.fails("ListEvents", request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in (err.details() or ""), err.details()
    denied = api.fails("ListEvents", pb.ListEventsRequest(), key=api.ingest)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED


def test_watch_resumes_after_a_disconnect_with_nothing_repeated(api: Api, watches: list[Watch]) -> None:
    tid = api.tenant.tenant_id
    publish(api.engine, tid, ["invoice.created"] * 5)
    first = Watch(api, key=api.read)
    watches.append(first)
    got = first.take(3)
    first.cancel()
    publish(api.engine, tid, ["invoice.paid"] * 4)
    resumed = Watch(api, after=got[-1].sequence)
    watches.append(resumed)
    rest = resumed.take(6)
    assert [e.sequence for e in got + rest] == list(range(1, 10))
    assert [e.type for e in rest] == ["invoice.created"] * 2 + ["invoice.paid"] * 4
    assert resumed.quiet()
    # It follows: an event committed now arrives on the open stream.
    publish(api.engine, tid, ["invoice.voided"])
    (live,) = resumed.take(1)
    assert (live.sequence, live.type) == (10, "invoice.voided")


def test_watch_sees_concurrent_emitters_gapless_and_in_order(api: Api, watches: list[Watch]) -> None:
    tid, threads_n, per_thread = api.tenant.tenant_id, 4, 15
    watch = Watch(api)
    watches.append(watch)
    errors: list[BaseException] = []

    def emitter(k: int) -> None:
        try:
            for i in range(per_thread):
                with api.engine.begin() as conn:
                    emit(conn, tid, [NewEvent("invoice.created", f"cus_{k}", {"i": i})])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=emitter, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    received = watch.take(threads_n * per_thread, timeout=60)
    for t in threads:
        t.join()
    assert not errors
    assert [e.sequence for e in received] == list(range(1, threads_n * per_thread + 1))
    for k in range(threads_n):  # each emitter's own events in its commit order
        mine = [json.loads(e.data_json)["i"] for e in received if e.customer == f"cus_{k}"]
        assert mine == list(range(per_thread))
    assert watch.quiet(0.2)


def test_watch_filters_by_type_and_refuses_bad_filters(api: Api, watches: list[Watch]) -> None:
    tid = api.tenant.tenant_id
    publish(api.engine, tid, ["invoice.created", "subscription.created", "invoice.paid", "wallet.balance_low"])
    watch = Watch(api, types=("invoice.", "wallet.balance_low"))
    watches.append(watch)
    assert [e.sequence for e in watch.take(3)] == [1, 3, 4]
    publish(api.engine, tid, ["subscription.paused", "invoice.voided"])
    assert [e.sequence for e in watch.take(1)] == [6]
    bad = Watch(api, types=("invoice.created", "invoices"))
    watches.append(bad)
    err = bad.error()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "types[1]: 'invoices'" in (err.details() or "")
    other = Watch(api, key=api.other.key)  # tenant B sees none of tenant A's events
    watches.append(other)
    assert other.quiet(0.3)
    denied = Watch(api, key=api.ingest)
    watches.append(denied)
    assert denied.error().code() == grpc.StatusCode.PERMISSION_DENIED


# --- webhooks --------------------------------------------------------------------------------------------------
def test_webhook_endpoint_receives_signed_events_through_the_servers_dispatcher(
    api: Api,
    receiver: Receiver,  # noqa: F811
) -> None:
    tid = api.tenant.tenant_id
    publish(api.engine, tid, ["invoice.created"])  # before the endpoint: not sent (it starts at the head)
    ep = api.call("CreateWebhookEndpoint", pb.CreateWebhookEndpointRequest(url=receiver.url, types=["invoice."]))
    assert ep.secret.startswith("whsec_") and ep.enabled and ep.delivered_sequence == 1
    listed = api.call("ListWebhookEndpoints", pb.ListWebhookEndpointsRequest(), key=api.read).endpoints
    assert [(e.id, e.url, list(e.types), e.secret) for e in listed] == [(ep.id, receiver.url, ["invoice."], "")]
    publish(api.engine, tid, ["subscription.created", "invoice.paid"])
    wait_for(lambda: receiver.sequences == [3])
    (got,) = receiver.requests
    assert verify_signature(ep.secret, got.headers["tally-signature"], got.body, time.time())
    assert json.loads(got.body)["type"] == "invoice.paid"

    def log() -> list[Any]:
        resp = api.call("ListWebhookDeliveries", pb.ListWebhookDeliveriesRequest(endpoint_id=ep.id), key=api.read)
        assert resp.next_page_token == ""
        return [(d.sequence, d.type, d.attempt, d.status, d.http_status, d.replay) for d in resp.deliveries]

    wait_for(lambda: log() == [(3, "invoice.paid", 1, "succeeded", 200, False)])  # recorded just after the POST
    queued = api.call("ReplayWebhookEvents", pb.ReplayWebhookEventsRequest(endpoint_id=ep.id, after_sequence=0))
    assert queued.queued == 2  # events 1 and 3 match invoice.; 2 does not
    wait_for(lambda: receiver.sequences == [3, 1, 3])
    wait_for(lambda: [x[0] for x in log() if x[3] == "succeeded" and x[5]] == [3, 1])
    disabled = api.call("DisableWebhookEndpoint", pb.DisableWebhookEndpointRequest(id=ep.id))
    assert (disabled.enabled, disabled.secret, disabled.delivered_sequence) == (False, "", 3)
    publish(api.engine, tid, ["invoice.voided"])
    time.sleep(0.4)  # several dispatcher passes
    assert receiver.sequences == [3, 1, 3]


def test_webhook_retries_then_dead_through_the_server(api: Api, receiver: Receiver) -> None:  # noqa: F811
    receiver.answer = lambda n: 500
    ep = api.call("CreateWebhookEndpoint", pb.CreateWebhookEndpointRequest(url=receiver.url))
    publish(api.engine, api.tenant.tenant_id, ["invoice.created"])

    def log() -> list[Any]:
        resp = api.call("ListWebhookDeliveries", pb.ListWebhookDeliveriesRequest(endpoint_id=ep.id))
        return [(d.attempt, d.status, d.http_status) for d in resp.deliveries]

    wait_for(lambda: log() == [(3, "dead", 500), (2, "failed", 500), (1, "failed", 500)])
    assert receiver.sequences == [1, 1, 1]
    assert api.call("ListWebhookEndpoints", pb.ListWebhookEndpointsRequest()).endpoints[0].delivered_sequence == 1


def test_webhook_rpcs_validate_and_are_tenant_scoped(api: Api) -> None:
    bad = api.fails("CreateWebhookEndpoint", pb.CreateWebhookEndpointRequest(url="ftp://x/y"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and (bad.details() or "").startswith("url:")
    bad = api.fails("CreateWebhookEndpoint", pb.CreateWebhookEndpointRequest(url="https://x/y", types=["nope"]))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "types[0]" in (bad.details() or "")
    assert api.call("ListWebhookEndpoints", pb.ListWebhookEndpointsRequest()).endpoints == []
    denied = api.fails("CreateWebhookEndpoint", pb.CreateWebhookEndpointRequest(url="https://x/y"), key=api.read)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    ep = api.call("CreateWebhookEndpoint", pb.CreateWebhookEndpointRequest(url="https://example.invalid/h"))
    for method, request in [
        ("DisableWebhookEndpoint", pb.DisableWebhookEndpointRequest(id=ep.id)),
        ("ListWebhookDeliveries", pb.ListWebhookDeliveriesRequest(endpoint_id=ep.id)),
        ("ReplayWebhookEvents", pb.ReplayWebhookEventsRequest(endpoint_id=ep.id)),
    ]:
        err = api.fails(method, request, key=api.other.key)
        assert err.code() == grpc.StatusCode.NOT_FOUND and f"no webhook endpoint {ep.id}" in (err.details() or "")
    assert api.call("ListWebhookEndpoints", pb.ListWebhookEndpointsRequest(), key=api.other.key).endpoints == []
    err = api.fails("DisableWebhookEndpoint", pb.DisableWebhookEndpointRequest(id=0))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "id must be an id from 1 to" in (err.details() or "")
    err = api.fails("ReplayWebhookEvents", pb.ReplayWebhookEventsRequest(endpoint_id=ep.id, to_sequence=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "to_sequence" in (err.details() or "")
    assert api.call("ListWebhookEndpoints", pb.ListWebhookEndpointsRequest()).endpoints[0].enabled


def test_webhook_deliveries_page_newest_first(api: Api, receiver: Receiver) -> None:  # noqa: F811
    ep = api.call("CreateWebhookEndpoint", pb.CreateWebhookEndpointRequest(url=receiver.url))
    publish(api.engine, api.tenant.tenant_id, ["invoice.created"] * 5)
    wait_for(lambda: len(receiver.requests) == 5)
    ids: list[int] = []
    token = ""
    while True:
        page = api.call(
            "ListWebhookDeliveries", pb.ListWebhookDeliveriesRequest(endpoint_id=ep.id, page_size=2, page_token=token)
        )
        ids += [d.id for d in page.deliveries]
        assert len(page.deliveries) <= 2
        token = page.next_page_token
        if not token:
            break
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    err = api.fails("ListWebhookDeliveries", pb.ListWebhookDeliveriesRequest(endpoint_id=ep.id, page_token="!!"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in (err.details() or "")


# --- alerts ----------------------------------------------------------------------------------------------------
def test_alert_rpcs_create_list_delete(api: Api) -> None:
    tid = api.tenant.tenant_id
    create_customer(api.engine, tid, CustomerDefinition(external_id="cus_1"), datetime.now(UTC))
    create_customer(api.engine, tid, CustomerDefinition(external_id="cus_2"), datetime.now(UTC))
    usage = api.call(
        "CreateAlert",
        pb.CreateAlertRequest(alert=pb.Alert(customer="cus_1", kind="usage", meter="api_calls", threshold="1000")),
    )
    assert (usage.customer, usage.kind, usage.meter, usage.unit, usage.threshold) == (
        "cus_1", "usage", "api_calls", "", "1000",
    )  # fmt: skip
    assert usage.id > 0 and usage.HasField("created_at")
    balance = api.call(
        "CreateAlert",
        pb.CreateAlertRequest(alert=pb.Alert(customer="cus_2", kind="balance", unit="USD", threshold="5.5")),
    )
    listed = api.call("ListAlerts", pb.ListAlertsRequest(), key=api.read).alerts
    assert [(a.id, a.customer, a.threshold) for a in listed] == [
        (usage.id, "cus_1", "1000"),
        (balance.id, "cus_2", "5.5"),
    ]
    assert [a.id for a in api.call("ListAlerts", pb.ListAlertsRequest(customer="cus_2")).alerts] == [balance.id]
    assert api.call("ListAlerts", pb.ListAlertsRequest(), key=api.other.key).alerts == []
    err = api.fails("DeleteAlert", pb.DeleteAlertRequest(id=usage.id), key=api.other.key)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    api.call("DeleteAlert", pb.DeleteAlertRequest(id=usage.id))
    assert [a.id for a in api.call("ListAlerts", pb.ListAlertsRequest()).alerts] == [balance.id]
    err = api.fails("DeleteAlert", pb.DeleteAlertRequest(id=usage.id))
    assert err.code() == grpc.StatusCode.NOT_FOUND and f"no alert {usage.id}" in (err.details() or "")


def test_create_alert_refuses_bad_input_and_writes_nothing(api: Api) -> None:
    create_customer(api.engine, api.tenant.tenant_id, CustomerDefinition(external_id="cus_1"), datetime.now(UTC))
    invalid, missing = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    for alert, code, fragment in [
        (pb.Alert(customer="cus_1", kind="usage", meter="nope", threshold="1"), missing,
         "alert.meter: no meter 'nope'"),
        (pb.Alert(customer="cus_1", kind="usage", meter="api_calls", threshold="abc"), invalid,
         "alert.threshold: 'abc' is not a decimal"),
        (pb.Alert(customer="cus_1", kind="temperature", threshold="1"), invalid, "alert.kind: 'temperature'"),
        (pb.Alert(customer="ghost", kind="spend", threshold="1"), missing, "no customer 'ghost'"),
        (None, invalid, "alert is required"),
    ]:  # fmt: skip
        request = pb.CreateAlertRequest() if alert is None else pb.CreateAlertRequest(alert=alert)
        err = api.fails("CreateAlert", request)
        assert err.code() == code and fragment in (err.details() or ""), err.details()
    spend = pb.CreateAlertRequest(alert=pb.Alert(customer="cus_1", kind="spend", threshold="1"))
    denied = api.fails("CreateAlert", spend, key=api.read)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert api.call("ListAlerts", pb.ListAlertsRequest()).alerts == []


def test_the_servers_evaluator_fires_a_usage_alert_onto_the_stream(api: Api, watches: list[Watch]) -> None:
    tid = api.tenant.tenant_id
    now = datetime.now(UTC)
    create_customer(api.engine, tid, CustomerDefinition(external_id="cus_1"), now)
    alert = api.call(
        "CreateAlert",
        pb.CreateAlertRequest(alert=pb.Alert(customer="cus_1", kind="usage", meter="api_calls", threshold="2")),
    )
    watch = Watch(api, types=("usage.",))
    watches.append(watch)
    write_events(api.engine, tid, [(f"e{k}", "cus_1", "api_calls", now, 1, None) for k in range(3)])
    (event,) = watch.take(1)
    data = json.loads(event.data_json)
    assert (event.type, event.customer, data["alert_id"], data["value"], data["threshold"]) == (
        "usage.threshold_crossed", "cus_1", alert.id, "3", "2",
    )  # fmt: skip
    assert data["period_start"] == now.strftime("%Y-%m-01T00:00:00+00:00")
    assert watch.quiet(0.5)  # once per period, though the evaluator keeps running


def test_an_open_watch_ends_when_the_server_stops(api: Api, watches: list[Watch]) -> None:
    watch = Watch(api)
    watches.append(watch)
    assert watch.quiet(0.2)
    started = time.monotonic()
    api.server.stop(grace_s=0.5)
    assert time.monotonic() - started < 10
    assert watch.error().code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
