"""The events, webhook and alert commands end to end on SQLite, and their failures as one line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from invoicing.events import NewEvent, emit, verify_signature
from metering.tenant import get_tenant
from tally.db import make_engine
from tests.conftest import CliRun as Run
from tests.invoicing.conftest import write_events
from tests.invoicing.test_webhook import Receiver, receiver  # noqa: F401 - the fixture


@pytest.fixture
def db(run: Run, tmp_path: Path) -> Iterator[tuple[Engine, int]]:
    """The CLI's database with tenant acme, its meter and customer cus_1 made through the CLI."""
    assert run("tenant", "create", "acme")[0] == 0
    assert run("meter", "create", "acme", "api_calls", "--aggregation", "count")[0] == 0
    assert run("customer", "create", "acme", "cus_1")[0] == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    yield engine, get_tenant(engine, "acme").id
    engine.dispose()


def publish(engine: Engine, tenant_id: int, types: list[str]) -> None:
    for t in types:
        with engine.begin() as conn:
            emit(conn, tenant_id, [NewEvent(t, "cus_1", {"total": "9.99"})])


def one_line_error(result: tuple[int, str, str], code: int = 1) -> str:
    assert result[0] == code, result
    lines = result[2].strip().splitlines()
    assert lines[-1].startswith("Error: "), result[2]
    return lines[-1]


def test_events_list_and_watch(run: Run, db: tuple[Engine, int]) -> None:
    engine, tid = db
    publish(engine, tid, ["invoice.created", "subscription.created", "invoice.paid"])
    code, out, _ = run("events", "list", "acme", "--type", "invoice.")
    assert code == 0 and "invoice.created" in out and "invoice.paid" in out and "subscription" not in out
    assert "last sequence read: 3 (continue with --after 3)" in out
    code, out, _ = run("events", "watch", "acme", "--after", "1", "--count", "2", "--poll", "0.01")
    lines = out.strip().splitlines()
    assert code == 0 and [ln.split()[0] for ln in lines] == ["2", "3"]
    assert lines[1].split()[3:] == ["invoice.paid", "cus_1", '{"total":"9.99"}']
    err = one_line_error(run("events", "list", "acme", "--type", "invoices"), code=2)
    assert "--type[0]: 'invoices' is not an event type" in err
    assert "no tenant named 'nope'" in one_line_error(run("events", "list", "nope"))


def test_webhook_commands(run: Run, db: tuple[Engine, int], receiver: Receiver) -> None:  # noqa: F811
    engine, tid = db
    code, out, _ = run("webhook", "create", "acme", receiver.url, "--type", "invoice.")
    assert code == 0 and "created webhook endpoint 1" in out
    secret = out.split("signing secret (shown once): ")[1].strip()
    assert secret.startswith("whsec_")
    publish(engine, tid, ["invoice.created", "invoice.paid"])
    code, out, _ = run("webhook", "deliver", "acme")
    assert code == 0 and "2 attempt(s): 2 succeeded, 0 failed (will retry), 0 dead" in out
    assert receiver.sequences == [1, 2]
    last = receiver.requests[-1]
    assert verify_signature(secret, last.headers["tally-signature"], last.body, datetime.now(UTC))
    code, out, _ = run("webhook", "list", "acme")
    assert code == 0 and "invoice." in out and secret not in out
    assert run("webhook", "replay", "acme", "1", "--after", "1", "--to", "2")[1].startswith("queued 1 event(s)")
    assert "1 attempt(s): 1 succeeded" in run("webhook", "deliver")[1]
    assert receiver.sequences == [1, 2, 2]
    code, out, _ = run("webhook", "deliveries", "acme", "1")
    assert code == 0 and out.count("succeeded") == 3 and "(replay)" in out
    assert "disabled webhook endpoint 1" in run("webhook", "disable", "acme", "1")[1]
    publish(engine, tid, ["invoice.voided"])
    assert "0 attempt(s)" in run("webhook", "deliver", "acme")[1]
    assert "url: 'ftp://x' must be an http://" in one_line_error(run("webhook", "create", "acme", "ftp://x"))
    assert "no webhook endpoint 7" in one_line_error(run("webhook", "disable", "acme", "7"))


def test_alert_commands(run: Run, db: tuple[Engine, int]) -> None:
    engine, tid = db
    code, out, _ = run("alert", "create", "acme", "cus_1", "usage", "3", "--meter", "api_calls")
    assert code == 0 and "created alert 1: cus_1 api_calls usage at 3" in out
    code, out, _ = run("alert", "list", "acme")
    assert code == 0 and "api_calls" in out and "usage" in out
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # + minutes: the same hour, so this period
    write_events(engine, tid, [(f"e{k}", "cus_1", "api_calls", now + timedelta(minutes=k), 1, None) for k in range(3)])
    code, out, _ = run("alert", "check", "acme")
    assert code == 0 and "alert 1 fired: cus_1 usage 3 vs 3" in out and "1 alert(s) fired" in out
    assert "0 alert(s) fired" in run("alert", "check")[1]  # once per period
    code, out, _ = run("events", "list", "acme", "--type", "usage.")
    assert code == 0 and "usage.threshold_crossed" in out and "last sequence read: 1" in out
    assert "alert.meter: no meter 'nope'" in one_line_error(
        run("alert", "create", "acme", "cus_1", "usage", "3", "--meter", "nope")
    )
    assert "alert.threshold: 'x' is not a decimal" in one_line_error(
        run("alert", "create", "acme", "cus_1", "spend", "x")
    )
    assert "deleted alert 1" in run("alert", "delete", "acme", "1")[1]
    assert "no alert 1" in one_line_error(run("alert", "delete", "acme", "1"))
