"""The server's outer wall, over real sockets on SQLite and PostgreSQL: hostile bodies, text, tokens,
instants, JSON, decimals, stream limits, revoked keys on open streams, and keys kept out of logs."""

from __future__ import annotations

import base64
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from sqlalchemy import Engine, func, select, text

from metering.tables import events
from metering.tenant import create_api_key, revoke_api_key
from tally.v1 import billing_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from tests.tally.api.conftest import Api, pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _rows(engine: Engine) -> dict[str, int]:
    """Row counts of every table in the test's schema: 'nothing stored' means this is unchanged."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            names = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))]
        else:
            names = [
                r[0] for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
            ]
        return {n: conn.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in names}


def _raw(api: Api, method: str, body: bytes, key: str | None = None) -> grpc.RpcError:
    call = api.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(body, metadata=(("authorization", f"Bearer {key or api.admin}"),), timeout=10)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{method} accepted a body that is not its message")


def test_bodies_that_are_not_protobuf_are_invalid_argument(api: Api) -> None:
    before = _rows(api.engine)
    for method in ("/tally.v1.BillingService/CreateCustomer", "/tally.v1.BillingService/ListInvoices",
                   "/tally.v1.IngestService/IngestBatch", "/tally.v1.BillingService/WatchEvents"):  # fmt: skip
        _bodies_refused(api, method)
    assert _rows(api.engine) == before


def _bodies_refused(api: Api, method: str) -> None:
    for body in (b"\xff\xff\xff\xff", b"\x0a\xff\x01", b"\x12\x05abc", b"\x08" + b"\xff" * 11):
        err = _raw(api, method, body, api.admin)
        assert err.code() == INVALID, (body, err.code(), err.details())
        assert "not a valid message" in (err.details() or "")


def test_control_characters_in_any_billing_field_are_refused_with_its_path(api: Api) -> None:
    before = _rows(api.engine)
    for bad in ("\x00", "a\x00b", "\x07", "\x1b[31m", "x\x7f"):
        _refused_everywhere(api, bad)
    assert _rows(api.engine) == before


def _refused_everywhere(api: Api, bad: str) -> None:
    cases: list[tuple[str, Any, str]] = [
        ("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(external_id=f"c{bad}")),
         "customer.external_id"),
        ("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(external_id="ok", name=bad)),
         "customer.name"),
        ("CreateCustomer",
         pb.CreateCustomerRequest(customer=pb.Customer(external_id="ok", address=pb.Address(city=bad))),
         "customer.address.city"),
        ("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(external_id="ok", metadata={"k": bad})),
         "customer.metadata['k']"),
        ("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(external_id="ok", metadata={bad: "v"})),
         "customer.metadata key"),
        ("GetCustomer", pb.GetCustomerRequest(external_id=bad), "external_id"),
    ]  # fmt: skip
    for method, request, path in cases:
        err = api.fails(method, request)
        assert err.code() == INVALID, (method, path, err.details())
        assert (err.details() or "").startswith(f"{path}: contains the control character"), err.details()


def test_tabs_and_newlines_stay_allowed(api: Api) -> None:
    created = api.call("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(
        external_id="cus_nl", name="Ada\tLtd", address=pb.Address(line1="1 Main St\r\nSuite 2"))))  # fmt: skip
    assert created.address.line1 == "1 Main St\r\nSuite 2"


def _event(event_id: str, customer: str = "c1", props: dict[str, str] | None = None) -> ingest_pb2.Event:
    e = ingest_pb2.Event(event_id=event_id, customer=customer, meter="tokens", value="1.00", properties=props or {})
    e.timestamp.FromMicroseconds(time.time_ns() // 1000)
    return e


def test_ingest_refuses_control_characters_per_event_in_both_forms(api: Api) -> None:
    stub = ingest_pb2_grpc.IngestServiceStub(api.channel)  # type: ignore[no-untyped-call]
    md = api.tenant.metadata
    rows = ingest_pb2.EventBatch(events=[
        _event("ok-1"), _event("bad\x00id"), _event("ok-2", customer="c\x00"), _event("ok-3", props={"k": "v\x00"}),
        _event("ok-4", props={"k\x01": "v"}), _event("ok-5"),
    ])  # fmt: skip
    ack = stub.IngestBatch(rows, metadata=md)
    assert (ack.accepted, ack.rejected) == (2, 4)
    assert [(e.index, e.field, e.code) for e in ack.errors] == [
        (1, "event_id", ingest_pb2.INVALID_EVENT_ID),
        (2, "customer", ingest_pb2.INVALID_CUSTOMER),
        (3, "properties.k", ingest_pb2.INVALID_PROPERTIES),
        (4, "properties", ingest_pb2.INVALID_PROPERTIES),
    ]
    now = time.time_ns() // 1000
    cols = ingest_pb2.EventBatch(columns=ingest_pb2.EventColumns(
        event_ids=["col-1", "col\x00", "col-3"], customers=["c1", "c1", "\x1fc"],
        meters=["tokens", "tokens", "tok\x00"],
        timestamps_unix_us=[now] * 3, value_units=[100] * 3, value_scale=2,
    ))  # fmt: skip
    ack = stub.IngestBatch(cols, metadata=md)
    assert (ack.accepted, ack.rejected) == (1, 2)
    assert [(e.index, e.code) for e in ack.errors] == [
        (1, ingest_pb2.INVALID_EVENT_ID),
        (2, ingest_pb2.INVALID_CUSTOMER),
    ]
    err = None
    try:
        stub.IngestBatch(ingest_pb2.EventBatch(batch_id="b\x00", events=[_event("x")]), metadata=md)
    except grpc.RpcError as exc:
        err = exc
    assert err is not None and err.code() == INVALID and "batch_id" in (err.details() or "")
    with api.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 3


def _token(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


FORGED_TOKENS = [_token(10**30), _token(-1), _token(2**63), _token("x"), _token([1]), _token({"a": 1}), _token(True),
     _token(1.5), base64.urlsafe_b64encode(b"[1e400]").decode(), base64.urlsafe_b64encode(b"NaN").decode(),
     "!!!", "A" * 5000, _token("[" * 3000)]  # fmt: skip


def test_forged_page_tokens_are_invalid_argument(api: Api) -> None:
    for token in FORGED_TOKENS:
        _forged_token_refused(api, token)


def _forged_token_refused(api: Api, token: str) -> None:
    for method, request in (
        ("ListInvoices", pb.ListInvoicesRequest(page_token=token)),
        ("ListSubscriptions", pb.ListSubscriptionsRequest(page_token=token)),
        ("ListWebhookDeliveries", pb.ListWebhookDeliveriesRequest(endpoint_id=1, page_token=token)),
    ):
        err = api.fails(method, request)
        assert err.code() in (INVALID, grpc.StatusCode.NOT_FOUND), (method, token[:40], err.code(), err.details())
    for method, request in (
        ("ListCustomers", pb.ListCustomersRequest(page_token=token)),
        ("ListMeters", pb.ListMetersRequest(page_token=token)),
        ("ListPlans", pb.ListPlansRequest(page_token=token)),
    ):
        if token == _token("x"):  # a code is a valid key for code-ordered lists
            continue
        err = api.fails(method, request)
        assert err.code() == INVALID, (method, token[:40], err.code(), err.details())


def test_instants_outside_the_accepted_years_are_invalid_argument(api: Api) -> None:
    api.call(
        "CreateCustomer",
        pb.CreateCustomerRequest(customer=pb.Customer(external_id="cus_t", timezone="Pacific/Kiritimati")),
    )
    for seconds in (-62135596800, 253402300799, -2208988801, 7258118400, 2**40):
        request = pb.GetUpcomingInvoiceRequest(customer="cus_t")
        request.at.seconds = seconds
        err = api.fails("GetUpcomingInvoice", request)
        assert err.code() == INVALID and (err.details() or "").startswith("at: "), err.details()


def test_deep_and_big_json_is_refused_before_parsing(api: Api) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    for method, request, field in (
        ("CreatePlan", pb.CreatePlanRequest(definition_json=deep), "definition_json"),
        ("SimulatePrice", pb.SimulatePriceRequest(price_json=deep, quantities=["1"]), "price_json"),
        ("CreatePlan", pb.CreatePlanRequest(definition_json='{"a": NaN}'), "definition_json"),
    ):
        err = api.fails(method, request)
        assert err.code() == INVALID and (err.details() or "").startswith(field), err.details()


AMOUNTS = ["1_0", "１２", "١٢", " 12", "12 ", "1e2", "NaN", "Infinity", "0x10", "1" * 5000, "1.001", "+-1", ".", ""]


def test_amounts_take_one_strict_parser_and_are_never_rounded(api: Api) -> None:
    api.call("CreateCustomer", pb.CreateCustomerRequest(customer=pb.Customer(external_id="cus_w", currency="USD")))
    before = _rows(api.engine)
    for amount in AMOUNTS:
        _amount_refused(api, amount)
    assert _rows(api.engine) == before
    ok = api.call("TopUpWallet", pb.TopUpWalletRequest(customer="cus_w", amount="12.50", unit="USD", top_up_id="t2"))
    assert ok is not None


def _amount_refused(api: Api, amount: str) -> None:
    err = api.fails("TopUpWallet", pb.TopUpWalletRequest(customer="cus_w", amount=amount, unit="USD", top_up_id="t1"))
    assert err.code() == INVALID, (amount, err.code(), err.details())
    assert "amount" in (err.details() or ""), err.details()


def test_streams_per_key_are_capped(make_server: Any, api: Api) -> None:
    server = make_server(api_limits={"streams_per_key_max": 2})
    channel = grpc.insecure_channel(server.target)
    billing = billing_pb2_grpc.BillingServiceStub(channel)  # type: ignore[no-untyped-call]
    md = (("authorization", f"Bearer {api.admin}"),)
    open_streams = [billing.WatchEvents(pb.WatchEventsRequest(), metadata=md, timeout=30) for _ in range(2)]
    time.sleep(0.3)
    third = billing.WatchEvents(pb.WatchEventsRequest(), metadata=md, timeout=30)
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(third))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "streams_per_key_max=2" in (caught.value.details() or "")
    other = (("authorization", f"Bearer {api.other.key}"),)  # another key is not affected
    fourth = billing.WatchEvents(pb.WatchEventsRequest(), metadata=other, timeout=1)
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(fourth))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for s in open_streams:
        s.cancel()
    time.sleep(0.3)
    again = billing.WatchEvents(pb.WatchEventsRequest(), metadata=md, timeout=1)  # slots are given back
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(again))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    channel.close()


def test_a_revoked_key_ends_its_open_streams_within_5_s(api: Api) -> None:
    key_id, key = create_api_key(api.engine, api.tenant.tenant_id)
    md = (("authorization", f"Bearer {key}"),)
    billing = billing_pb2_grpc.BillingServiceStub(api.channel)  # type: ignore[no-untyped-call]
    ingest = ingest_pb2_grpc.IngestServiceStub(api.channel)  # type: ignore[no-untyped-call]
    watch = billing.WatchEvents(pb.WatchEventsRequest(), metadata=md, timeout=20)
    stop = threading.Event()
    acked: list[ingest_pb2.IngestAck] = []

    def batches() -> Iterator[ingest_pb2.EventBatch]:
        k = 0
        while not stop.is_set():
            k += 1
            yield ingest_pb2.EventBatch(events=[_event(f"rk-{k}")])
            time.sleep(0.05)

    outcome: dict[str, Any] = {}

    def run_ingest() -> None:
        try:
            for ack in ingest.Ingest(batches(), metadata=md, timeout=20):
                acked.append(ack)
        except grpc.RpcError as exc:
            outcome["ingest"] = (exc.code(), time.monotonic())

    def run_watch() -> None:
        try:
            for _ in watch:
                pass
        except grpc.RpcError as exc:
            outcome["watch"] = (exc.code(), time.monotonic())

    threads = [threading.Thread(target=run_ingest), threading.Thread(target=run_watch)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert acked, "the stream works before the key is revoked"
    revoke_api_key(api.engine, api.tenant.tenant_id, key_id)
    revoked_at = time.monotonic()
    for t in threads:
        t.join(timeout=10)
    stop.set()
    assert outcome["ingest"][0] == grpc.StatusCode.UNAUTHENTICATED
    assert outcome["watch"][0] == grpc.StatusCode.UNAUTHENTICATED
    assert outcome["ingest"][1] - revoked_at <= 5.5 and outcome["watch"][1] - revoked_at <= 5.5


def _h2_call(port: int, path: str, authorization: bytes) -> list[tuple[bytes, bytes]]:
    """One gRPC call over raw HTTP/2 with header bytes no gRPC client would send; its trailers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    config = h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
    )
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    conn.send_headers(1, [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()), (b":authority", b"localhost"),
        (b"content-type", b"application/grpc"), (b"te", b"trailers"), (b"authorization", authorization),
    ])  # fmt: skip
    conn.send_data(1, b"\x00" + struct.pack(">I", 0), end_stream=True)
    sock.sendall(conn.data_to_send())
    headers: list[tuple[bytes, bytes]] = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return headers
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    headers.extend(event.headers)
                if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    return headers
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def test_a_malformed_authorization_header_never_puts_the_key_in_a_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    secret = api.admin[4:]
    caplog.set_level(logging.DEBUG)
    for value in (f"Bearer {api.admin}\xff".encode("latin-1"), f"Bearer {api.admin}".encode() + b"\xc3\x28",
                  f"bearer  {api.admin}\xfe".encode("latin-1")):  # fmt: skip
        trailers = dict(_h2_call(api.server.running.port, "/tally.v1.BillingService/ListCustomers", value))
        assert trailers.get(b"grpc-status") == b"16", trailers  # UNAUTHENTICATED, not INTERNAL
    assert caplog.records, "the probe should have made gRPC log the undecodable header"
    assert secret not in caplog.text
    assert all(secret not in r.getMessage() for r in caplog.records)
