"""The finance console in a real headless Chromium (Selenium), on the demo's month (SQLite): signing in,
an invoice and its ledger movements, a partial payment moving the status and the receivables, the finance
actions, what a read key and another tenant see, and accessibility basics on every page (every input
labelled, keyboard navigation with a visible focus, text contrast of at least 4.5:1).

A screenshot of every page is saved under $TALLY_TEST_ARTIFACTS/console (or a temporary folder, printed).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from invoicing.documents import get_invoice, list_invoices
from tests.tally.console.conftest import Demo

pytestmark = pytest.mark.timeout(240)

PAGES = {
    "overview": "/console/",
    "runs": "/console/runs",
    "invoices": "/console/invoices",
    "invoices-filtered": "/console/invoices?status=finalized&plan=developer",
    "revenue": "/console/revenue",
    "receivables": "/console/receivables",
    "portfolio": "/console/portfolio",
    "customers": "/console/customers",
    "customer-360": "/console/customers/cus_0001",
    "sla": "/console/sla",
    "simulation": "/console/simulation?candidate=developer@1",
    "invoice": "/console/invoices/1",
}

UNLABELLED = """
const out = [];
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  const byFor = el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]');
  if (!(byFor || el.closest('label') || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby'))) {
    out.push(el.outerHTML.slice(0, 120));
  }
}
return out;
"""

#: Every visible text (HTML text and SVG chart labels) against the background it is drawn on.
LOW_CONTRAST = """
function rgba(text) {
  const m = text.match(/rgba?\\(([^)]+)\\)/);
  if (!m) return null;
  const p = m[1].split(',').map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function lum(c) {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
}
function background(el) {
  let layers = [];
  for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  let bg = [255, 255, 255];
  for (const c of layers.reverse()) bg = bg.map((v, i) => v * (1 - c[3]) + c[i] * c[3]);
  return bg;
}
const out = [];
const all = document.querySelectorAll('body *');
for (const el of all) {
  const svg = el instanceof SVGElement;
  if (svg && el.tagName.toLowerCase() !== 'text') continue;
  const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own || !el.getClientRects().length) continue;
  const style = getComputedStyle(el);
  if (style.visibility === 'hidden' || style.display === 'none') continue;
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || r.right < 0 || r.bottom < 0) continue;  // off-screen (skip link)
  const fg = rgba(svg ? style.fill : style.color);
  if (!fg) continue;
  const bg = background(svg ? el.closest('figure') || el : el);
  const mixed = fg.slice(0, 3).map((v, i) => v * fg[3] + bg[i] * (1 - fg[3]));
  const a = lum(mixed), b = lum(bg);
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
  const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
  if (ratio < need) out.push(el.tagName + ' "' + el.textContent.trim().slice(0, 40) + '" ' + ratio.toFixed(2));
}
return out;
"""

FOCUS_VISIBLE = """
const el = document.activeElement;
const s = getComputedStyle(el);
return [el.tagName, (el.textContent || el.name || '').trim().slice(0, 30), s.outlineStyle, parseFloat(s.outlineWidth)];
"""


class Console:
    """The browser driven like a person: typing, clicking, reading what the page says."""

    def __init__(self, driver: Any, demo: Demo, shots: Path) -> None:
        self.d = driver
        self.demo = demo
        self.shots = shots

    def by(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.d.find_elements(By.CSS_SELECTOR, css))

    def open(self, path: str) -> None:
        self.d.get(self.demo.url + path)

    def press(self, element: Any) -> None:
        """Click something that loads a page, and wait until the new page has replaced the old one."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        page = self.by("html")
        element.click()

        def replaced(driver: Any) -> bool:
            # Chromium may answer "node does not belong to the document" rather than "stale" while the old
            # page is being torn down: either way the old page is gone.
            try:
                page.is_enabled()
            except WebDriverException:
                return True
            return False

        WebDriverWait(self.d, 20).until(replaced)
        WebDriverWait(self.d, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")

    def sign_in(self, key: str) -> None:
        self.d.delete_all_cookies()
        self.open("/console/sign-in")
        self.by("#api-key").send_keys(key)
        self.press(self.by("form button[type=submit]"))
        assert self.d.title.startswith("Overview"), self.d.title

    def shot(self, name: str) -> Path:
        height = self.d.execute_script("return document.documentElement.scrollHeight")
        self.d.set_window_size(1280, min(max(height, 600) + 40, 6000))
        path = self.shots / f"{name}.png"
        self.d.save_screenshot(str(path))
        self.d.set_window_size(1280, 1000)
        return path

    def text(self, css: str = "main") -> str:
        return str(self.by(css).text)

    def flash(self) -> str:
        found = self.all(".flash")
        return " ".join(f.text for f in found)


@pytest.fixture(scope="module")
def ui(browser: Any, demo: Demo, artifacts: Path) -> Console:
    print(f"console screenshots: {artifacts}")
    return Console(browser, demo, artifacts)


def _receivable(ui: Console) -> Decimal:
    ui.open("/console/receivables")
    text = ui.by('[data-total="USD"]').text  # "1,234.50 USD"
    return Decimal(text.replace(",", "").split()[0])


def test_sign_in_and_open_an_invoice_with_its_ledger_movements(ui: Console) -> None:
    ui.d.delete_all_cookies()
    ui.open("/console/invoices/1")
    assert ui.d.title.startswith("Sign in")  # signed out: to the sign-in page, and back after
    ui.shot("sign-in")
    ui.by("#api-key").send_keys(ui.demo.admin_key)
    ui.press(ui.by("form button[type=submit]"))
    assert ui.d.current_url.endswith("/console/invoices/1") and "INV-000001" in ui.d.title
    ui.open("/console/invoices")
    ui.press(ui.all("main table tbody th a")[1])
    assert "/console/invoices/2" in ui.d.current_url
    rows = ui.all("#movements tbody tr")
    assert rows and any("invoice revenue" in r.text for r in rows)
    assert any("receivable (" in r.text for r in rows)
    lines = ui.all("main table")[0].text
    assert "Total" in lines
    ui.shot("invoice-with-movements")


def test_a_partial_payment_changes_the_status_and_the_receivable(ui: Console) -> None:
    ui.sign_in(ui.demo.admin_key)
    before = _receivable(ui)
    finalized = [i for i in list_invoices(ui.demo.engine, ui.demo.tenant_id, status="finalized") if i.amount_due > 100]
    inv = finalized[0]
    ui.open(f"/console/invoices/{inv.id}")
    ui.by("#f-amount").send_keys("1.00")
    ui.by("#f-reference").send_keys("wire 7")
    ui.press(ui.by('[data-action="record-payment"]'))
    assert "Recorded a payment of 1.00 USD" in ui.flash() and "partially paid" in ui.flash()
    assert "partially paid" in ui.by("h1").text
    assert "wire 7" in ui.text()
    assert any("payment" in r.text and "1.00 USD" in r.text for r in ui.all("#movements tbody tr"))
    ui.shot("invoice-partially-paid")
    assert _receivable(ui) == before - Decimal("1.00")
    after = get_invoice(ui.demo.engine, ui.demo.tenant_id, inv.id or 0)
    assert (after.status, after.amount_due) == ("partially_paid", inv.amount_due - 100)
    ui.shot("receivables-after-payment")


def test_finance_actions_void_run_finalize_correct_and_bulk(ui: Console) -> None:
    ui.sign_in(ui.demo.admin_key)
    engine, tid = ui.demo.engine, ui.demo.tenant_id
    victim = next(i for i in list_invoices(engine, tid, status="finalized") if not i.amount_paid)
    ui.open(f"/console/invoices/{victim.id}")
    ui.by("#void-reason").send_keys("wrong address")
    ui.by("#void-reissue").click()
    ui.press(ui.by('[data-action="void"]'))
    assert "is void" in ui.flash() and "billed again" in ui.flash()
    # The cycle bills the voided items again, as a new draft.
    ui.open("/console/runs")
    ui.press(ui.by('[data-action="run-cycle"]'))
    assert "1 invoice created" in ui.flash(), ui.flash()
    assert "<progress" in ui.d.page_source
    ui.shot("runs-after-cycle")
    ui.open("/console/invoices?status=draft")
    ui.press(ui.all("main table tbody th a")[0])
    ui.shot("draft-invoice")
    ui.press(ui.by('[data-action="finalize"]'))
    assert "Finalized as INV-" in ui.flash()
    assert "finalized" in ui.by("h1").text
    ui.press(ui.by('[data-action="credit-note"]'))
    assert "nothing changed" in ui.flash()
    # Bulk: preview marking every finalized developer invoice paid, then apply it.
    ui.open("/console/invoices?status=finalized&plan=developer")
    open_ones = len(list_invoices(engine, tid, status="finalized"))
    ui.by("#bulk-action option[value=mark_paid]").click()
    ui.press(ui.by('button[value="preview"]'))
    assert "would apply to" in ui.flash() and "Nothing was changed" in ui.flash()
    assert len(list_invoices(engine, tid, status="finalized")) == open_ones
    ui.shot("bulk-preview")
    ui.by("#bulk-action option[value=mark_paid]").click()
    ui.press(ui.by('[data-action="bulk-apply"]'))
    assert "applied to" in ui.flash()
    assert len(list_invoices(engine, tid, status="finalized")) < open_ones


def test_a_read_key_sees_no_action_button(ui: Console) -> None:
    ui.sign_in(ui.demo.read_key)
    assert "read-only key" in ui.text("header")
    for name, path in PAGES.items():
        ui.open(path)
        assert not ui.all("[data-action]"), name
        posts = [f.get_attribute("action") for f in ui.all("form[method=post]")]
        assert [p.rsplit("/", 1)[-1] for p in posts] == ["sign-out"], (name, posts)
    ui.open("/console/invoices/1")
    ui.shot("invoice-read-only")


def test_another_tenants_invoice_is_not_found(ui: Console) -> None:
    ui.sign_in(ui.demo.other_key)
    ui.open("/console/invoices/1")
    assert ui.by("h1").text == "Not found" and "no invoice 1" in ui.text()
    assert "cus_" not in ui.text()
    ui.shot("other-tenant-not-found")
    ui.open("/console/customers/cus_0001")
    assert ui.by("h1").text == "Not found"


def test_every_page_screenshot_labels_contrast_and_keyboard(ui: Console) -> None:
    from selenium.webdriver.common.keys import Keys

    ui.sign_in(ui.demo.admin_key)
    for name, path in PAGES.items():
        ui.open(path)
        assert not ui.all(".flash-error"), (name, ui.flash())
        assert ui.d.execute_script(UNLABELLED) == [], name
        assert ui.d.execute_script(LOW_CONTRAST) == [], name
        assert not ui.all("[tabindex]:not([tabindex='-1']):not([tabindex='0'])"), name  # DOM order is tab order
        ui.shot(name)
    # Keyboard: the first Tab reaches the skip link, Enter moves to the content, and every stop shows focus.
    ui.open("/console/invoices/1")
    body = ui.by("body")
    body.send_keys(Keys.TAB)
    first = ui.d.switch_to.active_element
    assert first.get_attribute("class") == "skip-link" and first.is_displayed()
    ui.shot("keyboard-skip-link")
    first.send_keys(Keys.ENTER)
    assert ui.d.switch_to.active_element.get_attribute("id") == "main"
    seen = []
    for _ in range(12):
        ui.d.switch_to.active_element.send_keys(Keys.TAB)
        tag, label, style, width = ui.d.execute_script(FOCUS_VISIBLE)
        seen.append(f"{tag}:{label}")
        assert style != "none" and width >= 2, (tag, label, style, width)
    assert any(s.startswith("BUTTON") for s in seen) and any(s.startswith("INPUT") for s in seen), seen
    ui.shot("keyboard-focus")
    # The sign-in page, signed out, passes the same checks.
    ui.d.delete_all_cookies()
    ui.open("/console/sign-in")
    assert ui.d.execute_script(UNLABELLED) == [] and ui.d.execute_script(LOW_CONTRAST) == []
    assert re.search(r"Sign in", ui.d.title)
