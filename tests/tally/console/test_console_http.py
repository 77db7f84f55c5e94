"""The finance console over a real server and a real HTTP client, on SQLite and PostgreSQL: sign-in and
sessions, CSRF, what a read key may see and do, tenancy, every page, and the main flow (a partial payment
moving the invoice's status and the receivables)."""

from __future__ import annotations

import re

import httpx

from invoicing.documents import get_invoice
from tests.tally.console.conftest import Books, csrf_of, sign_in

PAGES = (
    "/console/",
    "/console/runs",
    "/console/invoices",
    "/console/invoices?status=finalized&plan=pro",
    "/console/revenue",
    "/console/revenue?from=2026-01&to=2026-03",
    "/console/receivables",
    "/console/portfolio",
    "/console/portfolio?since=90",
    "/console/sla",
    "/console/simulation",
    "/console/simulation?candidate=pro@1",
    "/console/customers",
    "/console/customers/ada",
)


def _h1(html: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    assert found is not None
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def test_signed_out_pages_go_to_sign_in_and_a_bad_key_is_refused(books: Books) -> None:
    r = httpx.get(f"{books.url}/console/invoices?status=draft", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in?next=/console/invoices%3Fstatus%3Ddraft"
    page = httpx.get(f"{books.url}/console/sign-in")
    assert 'for="api-key"' in page.text and 'type="password"' in page.text
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert token is not None
    bad = httpx.post(f"{books.url}/console/sign-in", data={"form_token": token.group(1), "api_key": "tly_nope"})
    assert bad.status_code == 401 and "unknown or revoked" in bad.text and "set-cookie" not in bad.headers
    forged = httpx.post(f"{books.url}/console/sign-in", data={"form_token": "x", "api_key": books.tenant.key})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    # An action posted without a session is refused, not performed.
    r = httpx.post(f"{books.url}/console/invoices/{books.draft}/finalize", data={"csrf_token": "x"})
    assert r.status_code == 401


def test_the_session_cookie_is_signed_httponly_strict_and_ends_on_sign_out(books: Books) -> None:
    client = sign_in(books.url, books.tenant.key)
    cookie = next(c for c in client.cookies.jar if c.name == "tally_console")
    assert cookie.path == "/console" and cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "strict"
    assert books.tenant.key not in (cookie.value or "")  # the key stays on the server
    home = client.get("/console/")
    assert home.status_code == 200 and "Tenant <strong>acme</strong>" in home.text
    assert home.headers["x-frame-options"] == "DENY" and "default-src 'self'" in home.headers["content-security-policy"]
    # A tampered cookie is no session.
    forged = httpx.get(f"{books.url}/console/", cookies={"tally_console": cookie.value + "x"}, follow_redirects=False)
    assert forged.status_code == 303
    out = client.post("/console/sign-out", data={"csrf_token": csrf_of(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
    again = httpx.get(f"{books.url}/console/", cookies={"tally_console": cookie.value}, follow_redirects=False)
    assert again.status_code == 303  # the old cookie names a session that no longer exists


def test_sign_in_never_redirects_off_site(books: Books) -> None:
    client = httpx.Client(base_url=books.url, follow_redirects=False)
    page = client.get("/console/sign-in?next=//evil.example/x")
    assert 'name="next" value="/console/"' in page.text
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post(
        "/console/sign-in",
        data={"form_token": token.group(1), "api_key": books.tenant.key, "next": "https://evil.example/"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/"


def test_every_page_renders_for_an_admin(books: Books) -> None:
    client = sign_in(books.url, books.tenant.key)
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[-800:])
        assert _h1(r.text) and "<main" in r.text and 'class="skip-link"' in r.text, path
    invoice = client.get(f"/console/invoices/{books.finalized[0]}")
    assert "Ledger movements" in invoice.text and 'id="movements"' in invoice.text and "invoice revenue" in invoice.text
    pdf = client.get(f"/console/invoices/{books.finalized[0]}/export.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert "attachment" in pdf.headers["content-disposition"]
    found = client.get("/console/invoices?q=INV-000001")
    assert found.status_code == 303 and found.headers["location"] == f"/console/invoices/{books.finalized[0]}"
    bad = client.get("/console/invoices?status=lost")
    assert bad.status_code == 400 and "status" in bad.text


def test_a_partial_payment_moves_the_status_and_the_receivable(books: Books) -> None:
    client = sign_in(books.url, books.tenant.key)
    invoice_id = books.finalized[0]
    page = client.get(f"/console/invoices/{invoice_id}")
    assert 'data-action="record-payment"' in page.text
    before = client.get("/console/receivables")
    total_before = re.search(r'data-total="USD">([^<]+)<', before.text)
    assert total_before is not None
    engine = books.server.running.engine
    due = get_invoice(engine, books.tenant.tenant_id, invoice_id).amount_due
    r = client.post(
        f"/console/invoices/{invoice_id}/pay",
        data={
            "csrf_token": csrf_of(page.text),
            "amount": "10.00",
            "paid_at": "2026-01-10",
            "method": "card",
            "reference": "ch_42",
            "back": f"/console/invoices/{invoice_id}",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == f"/console/invoices/{invoice_id}"
    after = client.get(f"/console/invoices/{invoice_id}")
    assert "partially paid" in after.text and "Recorded a payment of 10.00 USD" in after.text and "ch_42" in after.text
    inv = get_invoice(engine, books.tenant.tenant_id, invoice_id)
    assert (inv.status, inv.amount_due) == ("partially_paid", due - 1000)
    total_after = re.search(r'data-total="USD">([^<]+)<', client.get("/console/receivables").text)
    assert total_after is not None
    cents = [int(t.group(1).replace(",", "").replace(".", "").replace(" USD", "")) for t in (total_before, total_after)]
    assert cents[0] - cents[1] == 1000
    # An amount the currency cannot hold is refused in the API's words, on the page, and nothing is recorded.
    bad = client.post(
        f"/console/invoices/{invoice_id}/pay",
        data={
            "csrf_token": csrf_of(after.text),
            "amount": "1.001",
            "back": f"/console/invoices/{invoice_id}",
        },
    )
    assert bad.status_code == 303
    shown = client.get(f"/console/invoices/{invoice_id}")
    assert "more than 2 decimal places" in shown.text and 'role="alert"' in shown.text
    assert get_invoice(engine, books.tenant.tenant_id, invoice_id).amount_due == due - 1000


def test_a_form_without_this_sessions_csrf_token_is_refused(books: Books) -> None:
    client = sign_in(books.url, books.tenant.key)
    r = client.post(f"/console/invoices/{books.draft}/finalize", data={"csrf_token": "not-it"})
    assert r.status_code == 403 and "security token" in r.text
    other = sign_in(books.url, books.tenant.key)  # another session's token does not do either
    token = csrf_of(other.get("/console/").text)
    assert client.post(f"/console/invoices/{books.draft}/finalize", data={"csrf_token": token}).status_code == 403
    assert get_invoice(books.server.running.engine, books.tenant.tenant_id, books.draft).status == "draft"


def test_a_read_key_sees_no_action_and_cannot_post_one(books: Books) -> None:
    client = sign_in(books.url, books.read_key)
    for path in (*PAGES, f"/console/invoices/{books.draft}", f"/console/invoices/{books.finalized[0]}"):
        html = client.get(path).text
        assert "data-action=" not in html and "read-only key" in html, path
        forms = re.findall(r'<form method="post" action="([^"]+)"', html)
        assert forms == ["/console/sign-out"], (path, forms)  # signing out is the one thing it may post
    token = csrf_of(client.get("/console/").text)
    for action in ("finalize", "pay", "void", "credit-note", "paid-in-full", "uncollectible"):
        r = client.post(f"/console/invoices/{books.draft}/{action}", data={"csrf_token": token, "amount": "1"})
        assert r.status_code == 403 and "admin key" in r.text, action
    assert client.post("/console/runs", data={"csrf_token": token}).status_code == 403
    assert client.post("/console/invoices/bulk", data={"csrf_token": token, "action": "finalize"}).status_code == 403
    assert get_invoice(books.server.running.engine, books.tenant.tenant_id, books.draft).status == "draft"


def test_another_tenants_invoice_and_customer_are_not_found(books: Books) -> None:
    client = sign_in(books.url, books.other_key)
    for path in (
        f"/console/invoices/{books.finalized[0]}",
        f"/console/invoices/{books.finalized[0]}/export.pdf",
        "/console/customers/ada",
        f"/console/invoices/{books.draft}",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "ada" not in r.text.split("<main")[-1] or path.endswith("/ada"), path
    token = csrf_of(client.get("/console/").text)
    r = client.post(f"/console/invoices/{books.draft}/finalize", data={"csrf_token": token})
    assert r.status_code == 404
    assert get_invoice(books.server.running.engine, books.tenant.tenant_id, books.draft).status == "draft"
    listed = client.get("/console/invoices")
    assert "No invoice matches" in listed.text


def test_finance_actions_finalize_bulk_and_run(books: Books) -> None:
    client = sign_in(books.url, books.tenant.key)
    engine, tid = books.server.running.engine, books.tenant.tenant_id
    page = client.get("/console/invoices?status=draft").text
    preview = client.post(
        "/console/invoices/bulk",
        data={
            "csrf_token": csrf_of(page),
            "action": "finalize",
            "mode": "preview",
            "status": "draft",
            "back": "/console/invoices?status=draft",
        },
    )
    assert preview.status_code == 303
    shown = client.get("/console/invoices?status=draft").text
    assert "would apply to 1 of 1 invoices" in shown and "Nothing was changed" in shown
    assert get_invoice(engine, tid, books.draft).status == "draft"
    applied = client.post(
        "/console/invoices/bulk",
        data={
            "csrf_token": csrf_of(shown),
            "action": "finalize",
            "mode": "apply",
            "status": "draft",
            "back": "/console/invoices",
        },
    )
    assert applied.status_code == 303 and get_invoice(engine, tid, books.draft).status == "finalized"
    runs = client.get("/console/runs").text
    ran = client.post("/console/runs", data={"csrf_token": csrf_of(runs), "as_of": "2026-01-01"})
    assert ran.status_code == 303
    runs = client.get("/console/runs").text
    assert "already invoiced" in runs and "<progress" in runs
    credit = client.post(
        f"/console/invoices/{books.finalized[1]}/credit-note",
        data={"csrf_token": csrf_of(runs), "back": f"/console/invoices/{books.finalized[1]}"},
    )
    assert credit.status_code == 303
    assert "nothing changed" in client.get(credit.headers["location"]).text
