"""The customer portal over real HTTP (httpx against a real server): links, tenancy, conversions, plan changes,
disputes answered from the finance console's queue. The browser walk is in test_portal_browser.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer, rotate_portal_secret
from invoicing.documents import finalize_invoice, get_invoice, list_invoices, run_cycle
from invoicing.ledger import Ledger
from invoicing.subscriptions import create_subscription, list_subscriptions
from tally.console.portal._links import create_link
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import flat, publish
from tests.tally.console.conftest import csrf_of, sign_in
from tests.tally.console.portal_world import World, build


@pytest.fixture
def world(engine: Engine, tenant: TenantKey, make_server: Any) -> World:
    return build(engine, tenant, make_server(http=True))


def enter(world: World, customer: str = "ada") -> httpx.Client:
    client = httpx.Client(base_url=world.url, follow_redirects=False, timeout=30)
    r = client.get(world.link(customer).removeprefix(world.url))
    assert r.status_code == 200 and 'http-equiv="refresh"' in r.text, r.text
    return client


def text(html: str) -> str:
    """The page's words, tags dropped and spaces folded: what a reader sees."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def post(client: httpx.Client, path: str, page: str, **data: str) -> httpx.Response:
    return client.post(path, data={"csrf_token": csrf_of(client.get(page).text), **data})


def test_a_link_opens_one_customers_portal_and_nothing_else(world: World, engine: Engine) -> None:
    c = enter(world)
    home = text(c.get("/portal/").text)
    assert "Hello, Ada Lovelace" in home and "Spend so far this period" in home and "Upcoming invoice" in home
    listed = text(c.get("/portal/invoices").text)
    ada = [get_invoice(engine, world.tenant.tenant_id, i).label for i in world.ada_invoices]
    bob = [get_invoice(engine, world.tenant.tenant_id, i).label for i in world.bob_invoices]
    assert all(label in listed for label in ada) and not any(label in listed for label in bob)
    mine, theirs = world.ada_invoices[-1], world.bob_invoices[-1]
    assert c.get(f"/portal/invoices/{mine}").status_code == 200
    # Bob's invoice id typed into the URL, in every form a portal URL takes it: as absent as an unknown id.
    for path in (f"/portal/invoices/{theirs}", f"/portal/invoices/{theirs}/download.pdf",
                 f"/portal/invoices/{theirs}/download.csv", f"/portal/invoices/{theirs}/lines/1/dispute",
                 "/portal/invoices/999999", "/portal/invoices/abc", "/portal/invoices/99999999999999"):  # fmt: skip
        r = c.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "Bob" not in r.text and "bob" not in r.text
    r = post(c, f"/portal/invoices/{theirs}/lines/1/dispute", "/portal/", reason="not mine")
    assert r.status_code == 404
    # Another tenant's invoice: the same.
    other = make_tenant(engine, "globex")
    create_customer(engine, other.tenant_id, CustomerDefinition(external_id="zed", timezone="UTC"), world.this_month)
    publish(engine, other.tenant_id, "solo", [{"code": "base", "kind": "flat", "price": flat("5")}])
    create_subscription(engine, other.tenant_id, "zed", "solo", world.this_month)
    run_cycle(engine, other.tenant_id, world.this_month)
    (theirs_too,) = list_invoices(engine, other.tenant_id)
    finalize_invoice(engine, other.tenant_id, theirs_too.id or 0, world.this_month)
    assert c.get(f"/portal/invoices/{theirs_too.id}").status_code == 404
    assert c.get(f"/portal/invoices/{theirs_too.id}/download.pdf").status_code == 404
    # Nor is a subscription that is not the customer's.
    r = post(c, "/portal/plan/preview", "/portal/plan", subscription="999", action="cancel", timing="now")
    assert r.status_code == 404


def test_altered_expired_and_revoked_links_are_refused(world: World, engine: Engine) -> None:
    tid = world.tenant.tenant_id
    link = world.link()
    body, mac = link.rsplit("/", 1)[1].split(".")
    client = httpx.Client(base_url=world.url, follow_redirects=False, timeout=30)
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    for bad in (f"{flipped}.{mac}", f"{body}.{mac[:-2]}xx", f"{body}x.{mac}", "nonsense", "a.b", "." * 3):
        r = client.get(f"/portal/{bad}")
        assert r.status_code == 403 and "not valid" in r.text
        assert re.search(r"tally_portal=[^;\"]", r.headers.get("set-cookie", "")) is None  # no session opened
    past = create_link(engine, tid, "ada", datetime.now(UTC) - timedelta(hours=2), ttl_s=3600)
    r = client.get(past.path)
    assert r.status_code == 403 and "This link has expired" in r.text and "Ask for a new link" in r.text
    # Without a session nothing opens; with one, a rotation of the tenant's key ends it at once.
    assert client.get("/portal/").status_code == 401
    c = enter(world)
    assert c.get("/portal/balances").status_code == 200
    rotate_portal_secret(engine, tid, datetime.now(UTC))
    r = c.get("/portal/balances")
    assert r.status_code == 403 and "revoked" in r.text
    assert c.get("/portal/balances").status_code == 401
    assert httpx.get(link, timeout=30).status_code == 403  # the old link is dead too
    # Forms need the session's CSRF token.
    c = enter(world)
    r = c.post("/portal/balances/quote", data={"amount": "1", "target": "credits", "csrf_token": "forged"})
    assert r.status_code == 403


def test_converting_credits_to_points_shows_the_exact_result_first(world: World, engine: Engine) -> None:
    c = enter(world)
    quote = post(c, "/portal/balances/quote", "/portal/balances", amount="10.05", target="credits")
    seen = text(quote.text)
    assert quote.status_code == 200
    assert "1 USD = 10 credits" in seen and "Taken from your cash balance 10.00 USD" in seen
    assert "Added to your points 100 credits" in seen and "Not converted 0.05 USD" in seen
    assert "Cash balance after 40.00 USD" in seen
    ledger = Ledger(engine, world.tenant.tenant_id)
    assert ledger.balance(ledger.wallet("ada", "USD")).balance == 5000  # nothing moved yet
    form = dict(re.findall(r'name="(conversion_id|amount|target|rate|csrf_token)" value="([^"]*)"', quote.text))
    r = c.post("/portal/balances/convert", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/portal/balances"
    after = text(c.get("/portal/balances").text)
    assert "Converted 10.00 USD into 100 credits." in after
    assert ledger.balance(ledger.wallet("ada", "USD")).balance == 4000
    assert ledger.balance(ledger.wallet("ada", "credits")).balance == 100
    assert "Cash balance 40.00 USD" in after and "Points (credits) 100 credits" in after
    again = c.post("/portal/balances/convert", data=form)  # a double submit moves nothing twice
    assert again.status_code == 303 and ledger.balance(ledger.wallet("ada", "credits")).balance == 100
    forged = {**form, "conversion_id": "portal-999-abc"}  # another customer's id prefix
    r = c.post("/portal/balances/convert", data=forged)
    assert r.status_code == 303 and ledger.balance(ledger.wallet("ada", "credits")).balance == 100
    assert "start the conversion again" in text(c.get("/portal/balances").text)
    assert "Bad" not in text(post(c, "/portal/balances/quote", "/portal/balances", amount="abc",
                                  target="credits").text)  # fmt: skip


def test_a_plan_change_shows_the_proration_before_it_is_made(world: World, engine: Engine) -> None:
    tid = world.tenant.tenant_id
    c = enter(world)
    (sub,) = list_subscriptions(engine, tid, "ada")
    page = text(c.get("/portal/plan").text)
    assert "Team" in page and "Change to" in page
    preview = post(c, "/portal/plan/preview", "/portal/plan", subscription=str(sub.id), action="change",
                   plan="pro", timing="now")  # fmt: skip
    seen = text(preview.text)
    assert preview.status_code == 200, seen
    assert "Unused time on Team (base), credited" in seen and "Pro (base) for the rest of the period" in seen
    assert "You pay" in seen or "You get back" in seen
    assert list_subscriptions(engine, tid, "ada")[0].plan_version_id == sub.plan_version_id  # nothing changed yet
    form = dict(re.findall(r'name="(csrf_token|subscription|action|plan|timing|effective_at)" value="([^"]*)"',
                           preview.text))  # fmt: skip
    r = c.post("/portal/plan/confirm", data=form)
    assert r.status_code in (200, 303), text(r.text)
    if r.status_code == 200:  # the quarter hour turned between preview and confirm: confirm the new preview
        form = dict(re.findall(r'name="(csrf_token|subscription|action|plan|timing|effective_at)" value="([^"]*)"',
                               r.text))  # fmt: skip
        r = c.post("/portal/plan/confirm", data=form)
    assert r.status_code == 303 and "Your plan was changed." in text(c.get("/portal/plan").text)
    assert list_subscriptions(engine, tid, "ada")[0].plan_version_id != sub.plan_version_id
    # Cancelling at the period's end: no proration, and the end date is shown.
    preview = post(c, "/portal/plan/preview", "/portal/plan", subscription=str(sub.id), action="cancel",
                   timing="period_end")  # fmt: skip
    assert "nothing is prorated" in text(preview.text)
    form = dict(re.findall(r'name="(csrf_token|subscription|action|timing)" value="([^"]*)"', preview.text))
    assert c.post("/portal/plan/confirm", data=form).status_code == 303
    assert list_subscriptions(engine, tid, "ada")[0].ends_at is not None


def test_a_flagged_line_is_answered_from_the_finance_queue(world: World, engine: Engine, tenant: TenantKey) -> None:
    tid = world.tenant.tenant_id
    c = enter(world)
    inv = get_invoice(engine, tid, world.ada_invoices[-1])
    fee = next(ln for ln in inv.lines if ln.charge_code == "base")
    page = c.get(f"/portal/invoices/{inv.id}").text
    assert f"/portal/invoices/{inv.id}/lines/{fee.position}/dispute" in page
    form_page = f"/portal/invoices/{inv.id}/lines/{fee.position}/dispute"
    assert "What is wrong?" in c.get(form_page).text
    empty = post(c, form_page, form_page, reason="  ")
    assert empty.status_code == 303 and "What is wrong is required" in text(c.get(form_page).text)
    r = post(c, form_page, form_page, reason="We moved to the free plan on the 1st")
    assert r.status_code == 303 and r.headers["location"] == "/portal/disputes"
    mine = text(c.get("/portal/disputes").text)
    assert "We moved to the free plan on the 1st" in mine and "Our billing team is looking into it." in mine
    # Finance: a read key sees the queue without buttons; an admin key credits 30.00.
    reader = sign_in(world.url, _read_key(engine, tid))
    queue = reader.get("/console/disputes").text
    assert "We moved to the free plan" in queue and "Issue credit note" not in queue
    admin = sign_in(world.url, tenant.key)
    queue = admin.get("/console/disputes").text
    dispute_id = re.search(r'action="/console/disputes/(\d+)/credit"', queue)
    assert dispute_id is not None
    form = {"csrf_token": csrf_of(queue), "amount": "30.00", "note": "Sorry, fixed", "back": "/console/disputes"}
    r = admin.post(f"/console/disputes/{dispute_id.group(1)}/credit", data=form)
    assert r.status_code == 303
    done = text(admin.get("/console/disputes?status=credited").text)
    assert "CN-000001" in done and "Sorry, fixed" in done
    seen = text(c.get("/portal/disputes").text)
    assert "30.00 USD credited (before tax) on CN-000001" in seen and "Sorry, fixed" in seen
    note = next(i for i in list_invoices(engine, tid, customer="ada") if i.kind == "credit_note")
    assert c.get(f"/portal/invoices/{note.id}").status_code == 200  # the customer sees the credit note
    assert get_invoice(engine, tid, inv.id or 0).amount_due == inv.amount_due - 3600


def _read_key(engine: Engine, tenant_id: int) -> str:
    from metering.tenant import create_api_key

    return create_api_key(engine, tenant_id, ("read",))[1]
