"""The gRPC contract from another language: tests/node/client.mjs (grpc-js + proto-loader, loading proto/ at
run time, no generated code) ingests events and creates and lists customers on a real server.

Node is optional on a developer machine (the test skips without it) but CI must run it: with CI set, a
missing `node` or `npm` fails. Dependencies are installed once into tests/node/node_modules (git-ignored),
pinned by tests/node/package-lock.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer, get_customer, list_customers
from metering.usage import usage
from tests.conftest import ServerThread, make_tenant

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"`{name}` is not installed but CI is set: the Node.js client test must run in CI")
        pytest.skip(f"`{name}` is not installed")
    return found


@pytest.fixture(scope="session")
def node_client() -> tuple[str, Path]:
    """(node executable, client script) with the npm dependencies installed once."""
    node = _tool("node")
    npm = _tool("npm")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js" / "package.json").is_file():
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.fail(f"npm install in {NODE_DIR} failed:\n{done.stdout}\n{done.stderr}")
    return node, NODE_DIR / "client.mjs"


def test_node_client_ingests_creates_and_lists(
    node_client: tuple[str, Path], engine: Engine, make_server: Callable[..., ServerThread]
) -> None:
    node, script = node_client
    tenant = make_tenant(engine, "acme")
    other = make_tenant(engine, "globex")
    now = datetime.now(UTC)
    for external_id in ("cus_a", "cus_b"):
        create_customer(engine, tenant.tenant_id, CustomerDefinition(external_id=external_id), now)
    create_customer(engine, other.tenant_id, CustomerDefinition(external_id="cus_other"), now)
    server = make_server()

    done = subprocess.run(
        [node, str(script), server.target, tenant.key], capture_output=True, text=True, timeout=120, cwd=NODE_DIR
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)

    # Ingest: three events stored, the fourth (3 decimals on a 2-decimal meter) rejected by index.
    assert out["ingest"]["batch_id"] == "node-batch-1"
    assert (out["ingest"]["accepted"], out["ingest"]["duplicate"], out["ingest"]["rejected"]) == (3, 0, 1)
    assert out["ingest"]["errors"] == [{"index": 3, "field": "value", "code": "VALUE_SCALE_EXCEEDED"}]
    start = (now - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(days=2)
    calls = usage(engine, tenant.tenant_id, "node_cus_1", "api_calls", start, end)
    tokens = usage(engine, tenant.tenant_id, "node_cus_1", "tokens", start, end)
    assert [(r.quantity, r.events) for r in calls] == [(Decimal(2), 2)]
    assert [(r.quantity, r.events) for r in tokens] == [(Decimal("1234.56"), 1)]

    # CreateCustomer: what the server answered is what the database holds.
    stored = get_customer(engine, tenant.tenant_id, "node_cus_1")
    assert (stored.name, stored.currency, stored.timezone, stored.email) == (
        "Nodé Customer", "EUR", "Europe/Paris", "billing@node.example",
    )  # fmt: skip
    assert stored.address is not None and (stored.address.city, stored.address.country) == ("Paris", "FR")
    assert stored.metadata == {"source": "node"}
    assert stored.created_at is not None
    created = out["created"]
    assert created["external_id"] == "node_cus_1" and created["name"] == stored.name
    assert created["metadata"] == {"source": "node"} and created["city"] == "Paris"
    assert int(created["created_at_seconds"]) == int(stored.created_at.timestamp())

    # ListCustomers, one per page: exactly the tenant's customers in order, never the other tenant's.
    in_db = [c.external_id for c in list_customers(engine, tenant.tenant_id, limit=100).customers]
    assert in_db == ["cus_a", "cus_b", "node_cus_1"]
    assert [c["external_id"] for c in out["customers"]] == in_db
    assert out["customers"][2]["currency"] == "EUR"

    # A missing customer is NOT_FOUND (5), naming it.
    assert out["missing"]["code"] == 5
    assert "nobody" in out["missing"]["details"]


def test_without_node_ci_fails_and_a_developer_machine_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="`node` is not installed but CI is set"):
        _tool("node")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="`node` is not installed"):
        _tool("node")
