"""The HTTP JSON API against a real server over a real socket, with a real HTTP client (httpx).

Tenancy and scopes for every route run in test_access.py (the every-RPC table, once per transport); here:
the contract document, JSON in and out, GET for reads, pagination, the unary ingest, the event stream and
every way a request can be malformed — each refused with its status, the field named, nothing written.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tally.api.http import parse_request
from tally.errors import STATUS
from tally.protogen import ROOT
from tally.v1 import billing_pb2, ingest_pb2
from tests.tally.api.conftest import Api
from tests.tally.api.test_access import build_world


def post(api: Api, path: str, body: Any, key: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or api.admin}", **kw.pop("headers", {})}
    if isinstance(body, bytes):
        return httpx.post(f"{api.server.http_url}{path}", content=body, headers=headers, timeout=30, **kw)
    return httpx.post(f"{api.server.http_url}{path}", json=body, headers=headers, timeout=30, **kw)


def refused(response: httpx.Response, code: str, *words: str) -> str:
    assert response.status_code == STATUS[code].http, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == code and error["status"] == response.status_code
    for word in words:
        assert word in error["message"], (word, error["message"])
    return str(error["message"])


def test_the_openapi_document_is_the_generated_one_and_lists_every_method(api: Api) -> None:
    r = httpx.get(f"{api.server.http_url}/v1/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    document = r.json()
    assert document == json.loads((ROOT / "tally" / "v1" / "openapi.json").read_text())
    billing = billing_pb2.DESCRIPTOR.services_by_name["BillingService"]
    assert {f"/v1/billing/{m.name}" for m in billing.methods} <= set(document["paths"])
    assert "/v1/ingest/IngestBatch" in document["paths"] and "/v1/ingest/Ingest" not in document["paths"]
    op = document["paths"]["/v1/billing/RecordPayment"]["post"]
    assert op["x-tally-scope"] == "admin" and op["description"]  # the contract's comment
    assert document["components"]["schemas"]["Invoice"]["properties"]["total"]["type"] == "string"


def test_json_in_and_out_with_exact_strings_and_get_for_reads(api: Api) -> None:
    customer = {"external_id": "cus_h", "name": "Hé", "currency": "EUR"}
    created = post(api, "/v1/billing/CreateCustomer", {"customer": customer})
    assert created.status_code == 200, created.text
    assert created.json()["external_id"] == "cus_h" and created.json()["name"] == "Hé"
    got = httpx.get(
        f"{api.server.http_url}/v1/billing/GetCustomer", params={"external_id": "cus_h"},
        headers={"Authorization": f"Bearer {api.read}"},
    )  # fmt: skip
    assert got.status_code == 200 and got.json()["currency"] == "EUR"
    # Every field is present, zeros included, with the .proto names.
    assert "tax_region" in got.json() and got.json()["tax_region"] == ""
    # A change is never a GET.
    r = httpx.get(f"{api.server.http_url}/v1/billing/CreateCustomer", headers={"Authorization": f"Bearer {api.admin}"})
    refused(r, "invalid_argument", "POST")
    # Pages: the next-page token travels as a string.
    for n in range(3):
        post(api, "/v1/billing/CreateCustomer", {"customer": {"external_id": f"cus_p{n}", "currency": "USD"}})
    first = post(api, "/v1/billing/ListCustomers", {"page_size": 2}).json()
    assert len(first["customers"]) == 2 and first["next_page_token"]
    second = post(api, "/v1/billing/ListCustomers", {"page_size": 2, "page_token": first["next_page_token"]}).json()
    seen = [c["external_id"] for c in first["customers"] + second["customers"]]
    assert len(seen) == len(set(seen)) == 4


def test_every_malformed_request_is_refused_with_the_field_named_and_nothing_written(api: Api) -> None:
    refused(post(api, "/v1/billing/CreateCustomer", b"{not json"), "invalid_argument", "not JSON")
    refused(post(api, "/v1/billing/CreateCustomer", [1, 2]), "invalid_argument", "JSON object")
    refused(post(api, "/v1/billing/CreateCustomer", {"customer": {"external_id": "x", "nmae": "typo"}}),
            "invalid_argument", "customer.nmae", "no such field")  # fmt: skip
    refused(post(api, "/v1/billing/CreateCustomer", {"customer": {"external_id": 42}}),
            "invalid_argument", "customer.external_id", "string")  # fmt: skip
    refused(post(api, "/v1/billing/ListCustomers", {"page_size": "many"}), "invalid_argument", "page_size")
    refused(post(api, "/v1/billing/ListCustomers", {"page_size": 2**40}), "invalid_argument", "page_size")
    refused(post(api, "/v1/billing/GetInvoice", {"id": 1.5}), "invalid_argument", "id")
    refused(post(api, "/v1/billing/RunInvoiceCycle", {"as_of": "yesterday"}), "invalid_argument", "as_of")
    refused(post(api, "/v1/billing/CreateCustomer", {"customer": {"external_id": "a\u0000b"}}),
            "invalid_argument", "customer.external_id")  # fmt: skip
    refused(post(api, "/v1/billing/NoSuchThing", {}), "not_found", "openapi.json")
    refused(post(api, "/v1/billing/ListCustomers", {}, headers={"Authorization": "Bearer nope"}), "unauthenticated")
    refused(httpx.post(f"{api.server.http_url}/v1/billing/ListCustomers", json={}), "unauthenticated")
    soon = {"Tally-Timeout": "soon"}
    refused(post(api, "/v1/billing/ListCustomers", {}, headers=soon), "invalid_argument", "Tally-Timeout")
    huge = b'{"customer": {"external_id": "' + b"x" * (api.server.settings.ingest.message_bytes_max + 10) + b'"}}'
    refused(post(api, "/v1/billing/CreateCustomer", huge), "invalid_argument", "larger than")
    # The same domain errors as gRPC: an unknown id is NOT_FOUND, a bad value names its field.
    refused(post(api, "/v1/billing/GetInvoice", {"id": 999999}), "not_found")
    refused(post(api, "/v1/billing/CreateCustomer", {"customer": {"external_id": "cus_z", "currency": "XXQ"}}),
            "invalid_argument", "currency")  # fmt: skip
    listed = post(api, "/v1/billing/ListCustomers", {"page_size": 100}).json()["customers"]
    assert [c["external_id"] for c in listed] == []  # nothing above was written


def test_ingest_batch_over_http_counts_a_resent_event_once(api: Api) -> None:
    at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    batch = {"batch_id": "b1", "events": [
        {"event_id": "h-1", "customer": "cus_a", "meter": "api_calls", "timestamp": at, "value": "1"},
        {"event_id": "h-2", "customer": "cus_a", "meter": "nope", "timestamp": at, "value": "1"},
    ]}  # fmt: skip
    first = post(api, "/v1/ingest/IngestBatch", batch, key=api.ingest)
    assert first.status_code == 200, first.text
    ack = first.json()
    assert (ack["accepted"], ack["duplicate"], ack["rejected"]) == (1, 0, 1)
    assert ack["errors"][0]["code"] == "UNKNOWN_METER" and ack["errors"][0]["index"] == 1
    again = post(api, "/v1/ingest/IngestBatch", batch, key=api.ingest).json()
    assert (again["accepted"], again["duplicate"]) == (0, 1)
    refused(post(api, "/v1/ingest/IngestBatch", batch, key=api.read), "permission_denied")


def test_watch_events_streams_one_json_object_per_line(api: Api) -> None:
    world = build_world(api)  # a run wrote tenant A's invoice: its invoice.created event is in the outbox
    watch = billing_pb2.WatchEventsRequest(types=["invoice.created"])
    events = api.http_call("WatchEvents", watch, api.read, stream_s=1.0)
    assert {e.type for e in events} == {"invoice.created"} and len(events) == 2  # October's and November's
    # Money is an exact string in JSON, as the gRPC message has it.
    invoice = post(api, "/v1/billing/GetInvoice", {"id": world.invoice_id}, key=api.read).json()
    assert invoice["total"] == "30.00" and isinstance(invoice["id"], int | str)
    with httpx.stream("POST", f"{api.server.http_url}/v1/billing/WatchEvents", json={},
                      headers={"Authorization": "Bearer nope"}) as r:  # fmt: skip
        r.read()
        refused(r, "unauthenticated")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"events": {"event_id": "x"}}, ("events", "array")),
        ({"atomic": "yes"}, ("atomic", "true or false")),
        ({"columns": {"event_ids": "x"}}, ("columns.event_ids", "array")),
    ],
)
def test_parse_request_names_the_field(body: dict[str, Any], words: tuple[str, ...]) -> None:
    from metering.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as err:
        parse_request(body, ingest_pb2.EventBatch)
    for word in words:
        assert word in str(err.value)


def test_a_stop_closes_idle_keep_alive_connections_and_the_port(make_server: Any) -> None:
    """The HTTP server's own shutdown (uvicorn's, without its fixed pauses): an idle keep-alive connection is
    told to close, and the port no longer accepts, once `stop` returns."""
    server = make_server(http=True)
    host, port = "127.0.0.1", server.running.http_port
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        assert client.get("/v1/openapi.json").status_code == 200  # the connection stays open, idle
        idle = socket.create_connection((host, port))
        idle.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        idle.settimeout(10)
        assert idle.recv(12).startswith(b"HTTP/1.1 200")
        server.stop()
        while idle.recv(65536):  # the rest of the answer, then the server's close
            pass
        idle.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=5)
