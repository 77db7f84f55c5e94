"""Console fixtures: a signed-in HTTP client over a real server (both databases), and for the browser tests
one server on the demo's data and one headless Chromium per module."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import finalize_invoice, list_invoices, run_cycle
from invoicing.subscriptions import create_subscription
from metering.tenant import create_api_key
from tests.conftest import ServerThread, TenantKey, make_tenant
from tests.invoicing.conftest import T0, flat, publish, write_events

ARTIFACTS_ENV = "TALLY_TEST_ARTIFACTS"


def sign_in(base_url: str, key: str) -> httpx.Client:
    """An HTTP client signed in to the console with `key` (the form token read from the sign-in page)."""
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    page = client.get("/console/sign-in")
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert token is not None, page.text
    r = client.post("/console/sign-in", data={"form_token": token.group(1), "api_key": key, "next": "/console/"})
    assert r.status_code == 303, r.text
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


@dataclass
class Books:
    """A tenant with two customers billed for January 2026: one finalized invoice each, one draft."""

    server: ServerThread
    tenant: TenantKey
    read_key: str
    other_key: str  # another tenant's admin key
    finalized: list[int]
    draft: int

    @property
    def url(self) -> str:
        return self.server.http_url


@pytest.fixture
def books(make_server: Any, engine: Engine, tenant: TenantKey) -> Books:
    tid = tenant.tenant_id
    for name in ("ada", "bob", "cyd"):
        create_customer(engine, tid, CustomerDefinition(external_id=name, timezone="UTC"), T0)
    publish(
        engine,
        tid,
        "pro",
        [
            {"code": "base", "kind": "flat", "price": flat("30")},
            {
                "code": "calls",
                "kind": "usage",
                "meter": "api_calls",
                "price": {"model": "per_unit", "unit_amount": "0.01"},
            },
        ],
    )
    for name in ("ada", "bob", "cyd"):
        create_subscription(engine, tid, name, "pro", T0)
    write_events(engine, tid, [(f"c{k}", "ada", "api_calls", T0 + timedelta(hours=k), 1, None) for k in range(25)])
    run_cycle(engine, tid, T0)
    docs = list_invoices(engine, tid)
    finalized = [finalize_invoice(engine, tid, d.id or 0, T0 + timedelta(days=1)).id or 0 for d in docs[:2]]
    _, read_key = create_api_key(engine, tid, ("read",))
    other = make_tenant(engine, "other")
    server = make_server(http=True)
    return Books(server, tenant, read_key, other.key, finalized, docs[2].id or 0)


# --- the browser ----------------------------------------------------------------------------------------------
def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $TALLY_TEST_ARTIFACTS/console when set (CI keeps it), else a temporary folder."""
    base = os.environ.get(ARTIFACTS_ENV)
    folder = Path(base) / "console" if base else tmp_path_factory.mktemp("console-screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    paths = chromium_paths()
    if paths is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are required in CI (.ci/run installs them)")
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(paths[1]))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Demo:
    """The demo's month on SQLite, served with HTTP; keys of the demo tenant and of another tenant."""

    server: ServerThread
    admin_key: str
    read_key: str
    other_key: str
    tenant_id: int
    engine: Engine

    @property
    def url(self) -> str:
        return self.server.http_url


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    from rich.console import Console

    from metering.tenant import create_tenant
    from tally.demo import run_demo
    from tally.settings import Settings

    folder = tmp_path_factory.mktemp("console-demo")
    result = run_demo(folder, customers=36, seed=7, console=Console(file=io.StringIO()))
    server = ServerThread(Settings(database_url=result.database_url, port=0, http_port=0))
    engine = server.running.engine
    _, read_key = create_api_key(engine, result.tenant_id, ("read",))
    other = create_tenant(engine, "other")
    _, other_key = create_api_key(engine, other.id, ("admin", "read"))
    try:
        yield Demo(server, result.admin_key, read_key, other_key, result.tenant_id, engine)
    finally:
        server.stop()


__all__ = ["Books", "Demo", "csrf_of", "sign_in"]


#: Tests that also run on PostgreSQL: the main flow and tenancy. The rest are transport and rendering
#: checks that do not depend on the database, so SQLite alone keeps the suite fast.
BOTH_DATABASES = (
    "test_a_partial_payment_moves_the_status_and_the_receivable",
    "test_another_tenants_invoice_and_customer_are_not_found",
    # the portal (test_portal_http.py): tenancy and the dispute flow
    "test_a_link_opens_one_customers_portal_and_nothing_else",
    "test_a_flagged_line_is_answered_from_the_finance_queue",
)


@pytest.fixture(autouse=True)
def _sqlite_is_enough(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    on_postgres = callspec is not None and callspec.params.get("db_url") == "postgres"
    mine = request.module.__name__.endswith("test_console_http")  # the portal's tests choose for themselves
    if mine and on_postgres and request.node.originalname not in BOTH_DATABASES:
        pytest.skip("SQLite is enough for this check; the main flow and tenancy run on PostgreSQL too")
