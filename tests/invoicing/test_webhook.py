"""Webhooks against a real HTTP receiver on 127.0.0.1: signatures, retries, order, dead events, replay."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import Engine, select, update

import invoicing.events._webhook as webhook
from invoicing.events import (
    URL_MAX,
    Dispatcher,
    NewEvent,
    RetryPolicy,
    check_url,
    create_endpoint,
    deliver_once,
    disable_endpoint,
    emit,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    replay,
    signature,
    verify_signature,
)
from invoicing.platform_tables import webhook_deliveries, webhook_endpoints
from metering.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.conftest import TenantKey, make_tenant

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=4, backoff_base_s=1, backoff_max_s=8, timeout_s=2)


@dataclass
class Received:
    sequence: int
    body: bytes
    headers: dict[str, str]
    answered: int
    path: str = ""


@dataclass
class Receiver:
    """An HTTP server that records every POST; `answer(n)` picks the status of the n-th request (0-based)."""

    url: str
    requests: list[Received] = field(default_factory=list)
    answer: Callable[[int], int] = lambda _n: 200

    @property
    def sequences(self) -> list[int]:
        return [r.sequence for r in self.requests]

    @property
    def delivered(self) -> list[int]:
        return [r.sequence for r in self.requests if 200 <= r.answered < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    lock = threading.Lock()
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec = box[0]
            with lock:
                status = rec.answer(len(rec.requests))
                rec.requests.append(
                    Received(
                        json.loads(body)["sequence"],
                        body,
                        {k.lower(): v for k, v in self.headers.items()},
                        status,
                        self.path,
                    )
                )
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks"))
    # shutdown() waits for serve_forever's next poll: 0.5 s by default, on every test's teardown
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield box[0]
    server.shutdown()
    server.server_close()


def publish_events(engine: Engine, tenant_id: int, types: list[str], customer: str = "cus_1") -> list[int]:
    """One transaction per event, as the domain code does."""
    out = []
    for k, t in enumerate(types):
        with engine.begin() as conn:
            out += emit(conn, tenant_id, [NewEvent(t, customer, {"n": k, "amount": "12.50"})], at=NOW)
    return out


def statuses(engine: Engine, tenant_id: int, endpoint_id: int) -> list[tuple[int, int, str, bool]]:
    """(sequence, attempt, status, replay) of every attempt, oldest first."""
    page, _ = list_deliveries(engine, tenant_id, endpoint_id, limit=1000)
    return [(d.sequence, d.attempt, d.status, d.replay) for d in reversed(page)]


def test_signature_verifies_and_rejects_tampering_and_stale_timestamps(
    engine: Engine, tenant: TenantKey, receiver: Receiver
) -> None:
    ep = create_endpoint(engine, tenant.tenant_id, receiver.url, [], 0, NOW)
    assert ep.secret.startswith("whsec_") and len(ep.secret) == len("whsec_") + 64
    publish_events(engine, tenant.tenant_id, ["invoice.created"])
    summary = deliver_once(engine, NOW, policy=FAST)
    assert (summary.attempts, summary.succeeded) == (1, 1)
    (got,) = receiver.requests
    header = got.headers["tally-signature"]
    assert header.startswith(f"t={int(NOW.timestamp())},v1=")
    assert got.headers["tally-event-sequence"] == "1"
    assert got.headers["content-type"] == "application/json"
    body = json.loads(got.body)
    assert body == {
        "sequence": 1, "type": "invoice.created", "customer": "cus_1", "occurred_at": "2026-03-01T12:00:00+00:00",
        "data": {"amount": "12.50", "n": 0}, "tenant": "acme",
    }  # fmt: skip
    assert verify_signature(ep.secret, header, got.body, NOW + timedelta(seconds=10))
    assert verify_signature(ep.secret, header, got.body.decode(), NOW.timestamp())
    tampered = got.body.replace(b"12.50", b"99.50")
    assert not verify_signature(ep.secret, header, tampered, NOW)
    assert not verify_signature(ep.secret, header, got.body, NOW + timedelta(seconds=301))
    assert not verify_signature(ep.secret, header, got.body, NOW - timedelta(seconds=301))
    assert not verify_signature("whsec_other", header, got.body, NOW)
    assert not verify_signature(ep.secret, "v1=" + header.split("v1=")[1], got.body, NOW)  # no timestamp
    assert not verify_signature(ep.secret, "garbage", got.body, NOW)
    # A signature made for a later instant with the same secret verifies within tolerance.
    assert verify_signature(ep.secret, signature(ep.secret, got.body, NOW), got.body, NOW)


def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt(
    engine: Engine, tenant: TenantKey, receiver: Receiver
) -> None:
    tid = tenant.tenant_id
    receiver.answer = lambda n: 500 if n < 2 else 204
    ep = create_endpoint(engine, tid, receiver.url, [], 0, NOW)
    publish_events(engine, tid, ["invoice.finalized"])
    assert deliver_once(engine, NOW, policy=FAST).failed == 1
    assert deliver_once(engine, NOW + timedelta(milliseconds=999), policy=FAST).attempts == 0  # backoff: 1 s
    assert deliver_once(engine, NOW + timedelta(seconds=1), policy=FAST).failed == 1
    assert deliver_once(engine, NOW + timedelta(seconds=2.9), policy=FAST).attempts == 0  # backoff: 2 s more
    assert deliver_once(engine, NOW + timedelta(seconds=3), policy=FAST).succeeded == 1
    assert receiver.sequences == [1, 1, 1]
    page, _ = list_deliveries(engine, tid, ep.id)
    assert [(d.attempt, d.status, d.http_status) for d in page] == [(3, "succeeded", 204), (2, "failed", 500),
                                                                    (1, "failed", 500)]  # fmt: skip
    assert page[1].next_attempt_at == NOW + timedelta(seconds=3) and page[1].error.startswith("HTTP 500")
    assert page[0].next_attempt_at is None and page[0].attempted_at == NOW + timedelta(seconds=3)
    assert get_endpoint(engine, tid, ep.id).delivered_sequence == 1
    assert deliver_once(engine, NOW + timedelta(hours=1), policy=FAST).attempts == 0


def test_a_failing_event_holds_back_the_later_ones_so_order_is_kept(
    engine: Engine, tenant: TenantKey, receiver: Receiver
) -> None:
    tid = tenant.tenant_id
    receiver.answer = lambda n: 503 if n == 1 else 200  # the second event fails once
    ep = create_endpoint(engine, tid, receiver.url, [], 0, NOW)
    publish_events(engine, tid, ["invoice.created"] * 4)
    first = deliver_once(engine, NOW, policy=FAST)
    assert (first.succeeded, first.failed) == (1, 1)
    assert receiver.sequences == [1, 2]  # 3 and 4 wait behind 2
    assert get_endpoint(engine, tid, ep.id).delivered_sequence == 1
    deliver_once(engine, NOW + timedelta(seconds=1), policy=FAST)
    assert receiver.sequences == [1, 2, 2, 3, 4]
    assert receiver.delivered == [1, 2, 3, 4]
    assert get_endpoint(engine, tid, ep.id).delivered_sequence == 4


def test_dead_after_max_attempts_then_the_endpoint_moves_on(
    engine: Engine, tenant: TenantKey, receiver: Receiver
) -> None:
    tid = tenant.tenant_id
    receiver.answer = lambda n: 500 if n < 3 else 200
    policy = RetryPolicy(max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.002, timeout_s=2)
    ep = create_endpoint(engine, tid, receiver.url, [], 0, NOW)
    publish_events(engine, tid, ["invoice.created", "invoice.paid"])
    at = NOW
    for _ in range(5):
        deliver_once(engine, at, policy=policy)
        at += timedelta(seconds=1)
    assert statuses(engine, tid, ep.id) == [
        (1, 1, "failed", False), (1, 2, "failed", False), (1, 3, "dead", False), (2, 1, "succeeded", False),
    ]  # fmt: skip
    assert receiver.sequences == [1, 1, 1, 2]
    assert get_endpoint(engine, tid, ep.id).delivered_sequence == 2


def test_a_connection_error_is_a_failed_attempt_with_no_http_status(engine: Engine, tenant: TenantKey) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ep = create_endpoint(engine, tenant.tenant_id, f"http://127.0.0.1:{port}/x", [], 0, NOW)
    publish_events(engine, tenant.tenant_id, ["invoice.created"])
    assert deliver_once(engine, NOW, policy=FAST).failed == 1
    (d,) = [d for d in list_deliveries(engine, tenant.tenant_id, ep.id)[0] if d.status == "failed"]
    assert d.http_status == 0 and "ConnectError" in d.error


def test_replay_sends_again_without_moving_the_cursor_back(
    engine: Engine, tenant: TenantKey, receiver: Receiver
) -> None:
    tid = tenant.tenant_id
    ep = create_endpoint(engine, tid, receiver.url, ["invoice."], 0, NOW)
    publish_events(engine, tid, ["invoice.created", "subscription.created", "invoice.paid", "invoice.voided"])
    deliver_once(engine, NOW, policy=FAST)
    assert receiver.sequences == [1, 3, 4]  # the filter skips 2
    assert replay(engine, tid, ep.id, 0, 3, NOW) == 2  # events 1 and 3 match; 2 does not
    deliver_once(engine, NOW, policy=FAST)
    assert receiver.sequences == [1, 3, 4, 1, 3]
    assert get_endpoint(engine, tid, ep.id).delivered_sequence == 4
    assert [s for s in statuses(engine, tid, ep.id) if s[3]] == [(1, 1, "succeeded", True), (3, 1, "succeeded", True)]
    # One event: (S-1, S].
    assert replay(engine, tid, ep.id, 3, 4, NOW) == 1
    deliver_once(engine, NOW, policy=FAST)
    assert receiver.sequences[-1] == 4


def test_replay_checks_its_range_and_changes_nothing_when_refused(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    ep = create_endpoint(engine, tid, "https://example.invalid/hook", [], 0, NOW)
    publish_events(engine, tid, ["invoice.created"] * 3)
    with pytest.raises(InvalidArgument, match="to_sequence"):
        replay(engine, tid, ep.id, 0, 9, NOW)
    with pytest.raises(InvalidArgument, match="greater than after_sequence"):
        replay(engine, tid, ep.id, 2, 1, NOW)
    with pytest.raises(InvalidArgument, match="after_sequence"):
        replay(engine, tid, ep.id, -1, 0, NOW)
    disable_endpoint(engine, tid, ep.id)
    with pytest.raises(FailedPrecondition, match="disabled"):
        replay(engine, tid, ep.id, 0, 0, NOW)
    with engine.connect() as conn:
        assert conn.execute(select(webhook_deliveries)).all() == []


def test_a_disabled_endpoint_gets_nothing(engine: Engine, tenant: TenantKey, receiver: Receiver) -> None:
    tid = tenant.tenant_id
    ep = create_endpoint(engine, tid, receiver.url, [], 0, NOW)
    publish_events(engine, tid, ["invoice.created"])
    deliver_once(engine, NOW, policy=FAST)
    assert disable_endpoint(engine, tid, ep.id).enabled is False
    publish_events(engine, tid, ["invoice.paid", "invoice.voided"])
    assert deliver_once(engine, NOW, policy=FAST).attempts == 0
    assert receiver.sequences == [1]


def test_new_endpoints_start_at_the_head_or_the_given_sequence(
    engine: Engine, tenant: TenantKey, receiver: Receiver
) -> None:
    tid = tenant.tenant_id
    publish_events(engine, tid, ["invoice.created"] * 3)
    only_new = create_endpoint(engine, tid, receiver.url, [], 0, NOW)
    assert only_new.delivered_sequence == 3
    from_one = create_endpoint(engine, tid, receiver.url + "?b", [], 1, NOW)
    publish_events(engine, tid, ["invoice.paid"])
    deliver_once(engine, NOW, policy=FAST)
    assert [r.sequence for r in receiver.requests if r.path.endswith("?b")] == [2, 3, 4]
    assert [r.sequence for r in receiver.requests if not r.path.endswith("?b")] == [4]
    assert get_endpoint(engine, tid, only_new.id).delivered_sequence == 4
    assert get_endpoint(engine, tid, from_one.id).delivered_sequence == 4
    with pytest.raises(InvalidArgument, match="after_sequence 9 is past the latest event"):
        create_endpoint(engine, tid, receiver.url, [], 9, NOW)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("", "url is required"), ("ftp://host/x", "http:// or https://"), ("http:///nohost", "with a host"),
     ("http://h:99999/", "not a valid URL"), ("https://h/" + "x" * 2048, "at most 2048")],
)  # fmt: skip
def test_endpoint_url_must_be_http(url: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment) as err:
        check_url(url)
    assert str(err.value).startswith("url")


def test_a_refused_endpoint_writes_nothing(engine: Engine, tenant: TenantKey) -> None:
    with pytest.raises(InvalidArgument, match="http:// or https://"):
        create_endpoint(engine, tenant.tenant_id, "mailto:x@y.z", [], 0, NOW)
    with pytest.raises(InvalidArgument, match=r"types\[1\]: 'nope'"):
        create_endpoint(engine, tenant.tenant_id, "http://h/", ["invoice.", "nope"], 0, NOW)
    assert list_endpoints(engine, tenant.tenant_id) == []


def test_endpoints_are_tenant_scoped(engine: Engine, tenant: TenantKey) -> None:
    other = make_tenant(engine, "globex")
    ep = create_endpoint(engine, tenant.tenant_id, "http://h/", [], 0, NOW)
    for call in (
        lambda: get_endpoint(engine, other.tenant_id, ep.id),
        lambda: disable_endpoint(engine, other.tenant_id, ep.id),
        lambda: list_deliveries(engine, other.tenant_id, ep.id),
        lambda: replay(engine, other.tenant_id, ep.id, 0, 0, NOW),
    ):
        with pytest.raises(NotFound, match=f"no webhook endpoint {ep.id}"):
            call()
    assert get_endpoint(engine, tenant.tenant_id, ep.id).enabled


def test_two_dispatchers_at_once_send_each_event_once_in_order(
    engine: Engine, tenant: TenantKey, receiver: Receiver
) -> None:
    tid = tenant.tenant_id
    create_endpoint(engine, tid, receiver.url, [], 0, NOW)
    publish_events(engine, tid, ["invoice.created"] * 12)
    errors: list[BaseException] = []

    def dispatch() -> None:
        try:
            for _ in range(20):
                deliver_once(engine, policy=FAST)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=dispatch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert receiver.sequences == list(range(1, 13))


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/x", "http://localhost/x", "http://10.1.2.3/x", "http://192.168.0.7/x",
     "http://169.254.169.254/latest/meta-data", "http://[::1]/x", "http://0.0.0.0/x"],
)  # fmt: skip
def test_private_addresses_are_refused_when_the_server_blocks_them(url: str) -> None:
    """A shared deployment must not let a tenant aim webhooks at the operator's network (SSRF)."""
    assert check_url(url) == url  # allowed by default: self-hosted receivers on localhost are common
    with pytest.raises(InvalidArgument, match="private or loopback"):
        check_url(url, block_private=True)


def test_public_addresses_pass_the_block() -> None:
    assert check_url("https://93.184.216.34/hooks", block_private=True) == "https://93.184.216.34/hooks"


def test_delivery_rechecks_the_address(engine: Engine, tenant: TenantKey, receiver: Receiver) -> None:
    """An endpoint created while allowed (or a name re-pointed later) is refused at delivery time."""
    ep = create_endpoint(engine, tenant.tenant_id, receiver.url, [], 0, NOW)
    publish_events(engine, tenant.tenant_id, ["invoice.created"])
    blocking = RetryPolicy(max_attempts=1, timeout_s=2, block_private=True)
    summary = deliver_once(engine, NOW, policy=blocking)
    assert (summary.attempts, summary.succeeded) == (1, 0) and receiver.requests == []
    (delivery,) = list_deliveries(engine, tenant.tenant_id, ep.id, limit=10)[0]
    assert delivery.http_status == 0 and "private or loopback" in delivery.error


# --- URLs that cannot be sent, and a dispatcher that never stalls -------------------------------------------
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://h/a\x00b", "control character (U+0000)"),
        ("http://h/x\r\nX-Injected: 1", "control character (U+000D)"),
        ("http://h/\tx", "control character (U+0009)"),
        ("http://h/a b", "whitespace character (U+0020)"),
        (" http://h/", "whitespace character (U+0020) at position 0"),
        ("http://h/\x7f", "control character (U+007F)"),
        ("http://h/\x85", "control character (U+0085)"),
        ("http://h/\u00a0", "whitespace character (U+00A0)"),
        ("http://h/\u200b", "invisible format character (U+200B)"),
        ("javascript:alert(1)", "http:// or https://"),
        ("ftp://h/x", "http:// or https://"),
        ("http://", "with a host"),
        ("http://user:pw@h/", "credentials"),
        ("http://h\\@evil.example/", "backslash"),
        ("http://h/#frag", "fragment"),
        ("http://h:99999/", "not a valid URL"),
        ("http://h:0/", "not a valid URL"),
        ("http://h:+80/", "not a valid URL"),
        ("https://h/" + "x" * URL_MAX, f"at most {URL_MAX}"),
        ("http://" + "a" * 64 + ".example/", "not a DNS name"),
        ("http://a..b/", "not a DNS name"),
        ("http://xn--a.example/", "not a valid URL"),
        ("http://a.xn--a.example/", "not valid IDNA"),
        ("http://\u2100.example/", "not a valid URL"),
        ("http://%6c%6fcalhost/", "may only hold"),
        ("http://0x7f.1/", "dotted-quad"),
        ("http://127.1/", "dotted-quad"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        ("http://h\u3002example/", "parsers disagree"),
    ],
    ids=lambda v: v if len(v) < 40 and v.isprintable() else ascii(v)[:40],
)
def test_unsendable_urls_are_refused_at_creation(engine: Engine, tenant: TenantKey, url: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^url") as err:
        create_endpoint(engine, tenant.tenant_id, url, [], 0, NOW)
    assert fragment in str(err.value)
    assert list_endpoints(engine, tenant.tenant_id) == []


@pytest.mark.parametrize(
    "url",
    ["https://example.com/hooks?tenant=acme&x=%20y", "http://127.0.0.1:8080/h", "http://[::1]:9000/h",
     "https://EXAMPLE.com/Path", "https://b\u00fccher.example/h\u00e9", "https://xn--bcher-kva.example/",
     "http://receiver_1:8000/hooks", "https://example.com./h", "https://h/" + "x" * (URL_MAX - 10)],
)  # fmt: skip
def test_sendable_urls_are_accepted_unchanged(engine: Engine, tenant: TenantKey, url: str) -> None:
    assert create_endpoint(engine, tenant.tenant_id, url, [], 0, NOW).url == url
    assert check_url(url) == url


def _point_at(engine: Engine, endpoint_id: int, url: str) -> None:
    """As if the row predates the URL rules, or was edited in the database."""
    with engine.begin() as conn:
        conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(url=url))


@pytest.mark.parametrize("parallel", [1, 8])
@pytest.mark.parametrize(
    "bad",
    ["http://h/x\r\nX-Injected: 1", "http://h/\tx", "http://" + "a" * 64 + ".example/", "http://xn--a.example/",
     "javascript:alert(1)", "http://user:pw@h/"],
    ids=["crlf", "tab", "long-label", "bad-idna", "javascript", "userinfo"],
)  # fmt: skip
def test_an_unsendable_stored_url_is_dead_after_one_pass_and_the_others_are_delivered(
    engine: Engine, tenant: TenantKey, receiver: Receiver, bad: str, parallel: int
) -> None:
    other = make_tenant(engine, "globex")
    broken = create_endpoint(engine, tenant.tenant_id, receiver.url + "?broken", [], 0, NOW)
    fine = create_endpoint(engine, tenant.tenant_id, receiver.url + "?fine", [], 0, NOW)
    elsewhere = create_endpoint(engine, other.tenant_id, receiver.url + "?globex", [], 0, NOW)
    _point_at(engine, broken.id, bad)
    publish_events(engine, tenant.tenant_id, ["invoice.created", "invoice.paid"])
    publish_events(engine, other.tenant_id, ["invoice.created"])
    policy = RetryPolicy(max_attempts=12, backoff_base_s=1, backoff_max_s=8, timeout_s=2, parallel=parallel)
    summary = deliver_once(engine, NOW, policy=policy)
    assert (summary.attempts, summary.succeeded, summary.dead, summary.failed) == (5, 3, 2, 0)
    assert statuses(engine, tenant.tenant_id, broken.id) == [(1, 1, "dead", False), (2, 1, "dead", False)]
    page, _ = list_deliveries(engine, tenant.tenant_id, broken.id)
    assert all(d.http_status == 0 and d.error.startswith("refused: url") for d in page)
    assert get_endpoint(engine, tenant.tenant_id, broken.id).delivered_sequence == 2
    assert sorted((r.path.rsplit("?", 1)[1], r.sequence) for r in receiver.requests) == [
        ("fine", 1), ("fine", 2), ("globex", 1),
    ]  # fmt: skip
    assert get_endpoint(engine, tenant.tenant_id, fine.id).delivered_sequence == 2
    assert get_endpoint(engine, other.tenant_id, elsewhere.id).delivered_sequence == 1
    assert deliver_once(engine, NOW + timedelta(hours=1), policy=policy).attempts == 0  # nothing left pending


def _raise_for(marker: str, exc: BaseException) -> Callable[..., httpx.Response]:
    real = httpx.Client.post

    def post(self: httpx.Client, url: httpx.URL | str, **kwargs: object) -> httpx.Response:
        if marker in str(url):
            raise exc
        return real(self, url, **kwargs)  # type: ignore[arg-type]

    return post


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("boom"), UnicodeError("label empty or too long"), httpx.InvalidURL("bad"), KeyError("k")],
    ids=["RuntimeError", "UnicodeError", "InvalidURL", "KeyError"],
)
def test_an_exception_while_sending_is_a_failed_attempt_and_the_pass_goes_on(
    engine: Engine, tenant: TenantKey, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    tid = tenant.tenant_id
    monkeypatch.setattr(httpx.Client, "post", _raise_for("?boom", exc))
    boom = create_endpoint(engine, tid, receiver.url + "?boom", [], 0, NOW)
    create_endpoint(engine, tid, receiver.url + "?fine", [], 0, NOW)
    publish_events(engine, tid, ["invoice.created"])
    summary = deliver_once(engine, NOW, policy=FAST)
    assert (summary.attempts, summary.succeeded, summary.failed) == (2, 1, 1)
    assert [r.path for r in receiver.requests] == ["/hooks?fine"]
    ((attempt, status, error),) = [(d.attempt, d.status, d.error) for d in list_deliveries(engine, tid, boom.id)[0]
                                   if d.status != "pending"]  # fmt: skip
    assert (attempt, status) == (1, "failed") and error.startswith(type(exc).__name__)
    # The normal retry schedule follows, and the event is dead after the last attempt.
    at = NOW
    for _ in range(FAST.max_attempts):
        at += timedelta(seconds=FAST.backoff_max_s)
        deliver_once(engine, at, policy=FAST)
    assert [s[2] for s in statuses(engine, tid, boom.id)] == ["failed"] * (FAST.max_attempts - 1) + ["dead"]
    assert get_endpoint(engine, tid, boom.id).delivered_sequence == 1


def test_an_exception_while_signing_is_a_failed_attempt(
    engine: Engine, tenant: TenantKey, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = tenant.tenant_id
    boom = create_endpoint(engine, tid, receiver.url + "?boom", [], 0, NOW)
    create_endpoint(engine, tid, receiver.url + "?fine", [], 0, NOW)
    real = webhook.signature

    def sign(secret: str, body: bytes, at: datetime | float) -> str:
        if secret == boom.secret:
            raise ValueError("no signing today")
        return real(secret, body, at)

    monkeypatch.setattr(webhook, "signature", sign)
    publish_events(engine, tid, ["invoice.created"])
    summary = deliver_once(engine, NOW, policy=FAST)
    assert (summary.succeeded, summary.failed) == (1, 1)
    assert [r.path for r in receiver.requests] == ["/hooks?fine"]
    assert [(s[1], s[2]) for s in statuses(engine, tid, boom.id)] == [(1, "failed"), (2, "pending")]


@pytest.mark.parametrize("parallel", [1, 8])
def test_one_endpoint_failing_outside_an_attempt_does_not_end_the_pass(
    engine: Engine, tenant: TenantKey, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    """Even a failure in the dispatcher's own bookkeeping (here: claiming) ends only that endpoint's turn."""
    tid = tenant.tenant_id
    boom = create_endpoint(engine, tid, receiver.url + "?boom", [], 0, NOW)
    create_endpoint(engine, tid, receiver.url + "?fine", [], 0, NOW)
    real = webhook._claim

    def claim(ctx: webhook._Context, endpoint_id: int) -> webhook.Delivery | None:
        if endpoint_id == boom.id:
            raise RuntimeError("database hiccup")
        return real(ctx, endpoint_id)

    monkeypatch.setattr(webhook, "_claim", claim)
    publish_events(engine, tid, ["invoice.created", "invoice.paid"])
    policy = RetryPolicy(max_attempts=4, backoff_base_s=1, backoff_max_s=8, timeout_s=2, parallel=parallel)
    assert deliver_once(engine, NOW, policy=policy).succeeded == 2
    assert receiver.sequences == [1, 2]
    monkeypatch.setattr(webhook, "_claim", real)
    assert deliver_once(engine, NOW, policy=policy).succeeded == 2  # the queued event was kept, in order
    assert [r.path for r in receiver.requests[2:]] == ["/hooks?boom"] * 2 and receiver.sequences[2:] == [1, 2]


def _wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_dispatcher_keeps_running_after_a_delivery_raised(
    engine: Engine, tenant: TenantKey, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = tenant.tenant_id
    monkeypatch.setattr(httpx.Client, "post", _raise_for("?boom", RuntimeError("unexpected")))
    boom = create_endpoint(engine, tid, receiver.url + "?boom", [], 0, NOW)
    create_endpoint(engine, tid, receiver.url + "?fine", [], 0, NOW)
    policy = RetryPolicy(max_attempts=2, backoff_base_s=0.05, backoff_max_s=0.05, timeout_s=2)
    dispatcher = Dispatcher(engine, policy, interval_s=0.05)
    dispatcher.start()
    try:
        publish_events(engine, tid, ["invoice.created"])
        dispatcher.wake()
        _wait_for(lambda: [s[2] for s in statuses(engine, tid, boom.id)] == ["failed", "dead"])
        _wait_for(lambda: receiver.sequences == [1])
        publish_events(engine, tid, ["invoice.paid"])  # after the pass that raised: still served
        dispatcher.wake()
        _wait_for(lambda: receiver.sequences == [1, 2])
        _wait_for(lambda: len(statuses(engine, tid, boom.id)) == 4 and statuses(engine, tid, boom.id)[-1][2] == "dead")
        assert dispatcher._thread is not None and dispatcher._thread.is_alive()
        (error,) = {d.error for d in list_deliveries(engine, tid, boom.id)[0]}
        assert error == "RuntimeError: unexpected"
    finally:
        dispatcher.stop()
