"""The customer portal in a real headless Chromium (Selenium), on SQLite: a portal link opens the customer's
account; credits are converted to points and both balances change; a plan change shows its proration; a line
is flagged, answered with a credit note from the finance console's queue, and the outcome shows in the portal;
a PDF is downloaded; an expired or altered link and another customer's invoice id are refused. Every page is
checked for labelled inputs, text contrast and keyboard focus, and a screenshot of it is kept under
$TALLY_TEST_ARTIFACTS/console (portal-*.png)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from invoicing.documents import get_invoice
from invoicing.ledger import Ledger
from tally.console.portal._links import create_link
from tests.conftest import TenantKey
from tests.tally.console.portal_world import World, build
from tests.tally.console.test_finance_browser import FOCUS_VISIBLE, LOW_CONTRAST, UNLABELLED, Console

pytestmark = pytest.mark.timeout(240)


class Portal(Console):
    """The finance tests' driver (`Console`), pointed at the portal's world."""

    def check_page(self, name: str) -> None:
        """Accessibility basics, then a screenshot."""
        assert not self.all(".flash-error"), (name, self.flash())
        assert self.d.execute_script(UNLABELLED) == [], name
        assert self.d.execute_script(LOW_CONTRAST) == [], name
        assert not self.all("[tabindex]:not([tabindex='-1']):not([tabindex='0'])"), name
        self.shot(f"portal-{name}")

    def nav(self, label: str) -> None:
        from selenium.webdriver.common.by import By

        self.press(self.d.find_element(By.LINK_TEXT, label))

    def enter(self, url: str) -> None:
        """Open a portal link; its page moves on to the overview by itself."""
        from selenium.webdriver.support.ui import WebDriverWait

        self.d.delete_all_cookies()
        self.d.get(url)
        WebDriverWait(self.d, 20).until(lambda d: d.title.startswith(("Overview", "Link", "Not found")))


@pytest.fixture
def world(engine: Engine, tenant: TenantKey, make_server: Any, db_url: str) -> World:
    if not db_url.startswith("sqlite"):
        pytest.skip("the browser walk runs on SQLite; test_portal_http.py covers both databases")
    return build(engine, tenant, make_server(http=True))


@pytest.fixture
def portal(browser: Any, world: World, artifacts: Path, tmp_path: Path) -> Portal:
    print(f"portal screenshots: {artifacts}")
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    return Portal(browser, world, artifacts)  # type: ignore[arg-type]


def test_the_portal_walk(portal: Portal, world: World, engine: Engine, tenant: TenantKey, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    tid = tenant.tenant_id
    p = portal
    p.enter(world.link(return_url="https://app.example/account"))
    assert p.by("h1").text == "Hello, Ada Lovelace"
    assert p.all("figure.chart svg[role=img]"), "no usage chart"
    assert "Upcoming invoice" in p.text() and "Spend so far this period" in p.text()
    p.check_page("overview")

    # Credits to points: the exact result first, then both balances move.
    p.nav("Balances")
    assert "50.00 USD" in p.text(".stats")
    p.check_page("balances")
    p.by("#f-amount").send_keys("10.05")
    Select(p.by("#f-target")).select_by_value("credits")
    p.press(p.by("form[action$='/balances/quote'] button[type=submit]"))
    assert p.by("#quote-debit").text == "10.00 USD" and p.by("#quote-credit").text == "100 credits"
    assert "Not converted" in p.text() and "Cash balance after" in p.text()
    p.check_page("convert-confirm")
    p.press(p.by("form[action$='/balances/convert'] button[type=submit]"))
    assert "Converted 10.00 USD into 100 credits." in p.flash()
    stats = p.text(".stats")
    assert "40.00 USD" in stats and "100 credits" in stats
    ledger = Ledger(engine, tid)
    assert ledger.balance(ledger.wallet("ada", "credits")).balance == 100
    assert ledger.balance(ledger.wallet("ada", "USD")).balance == 4000
    p.check_page("balances-after-conversion")

    # A plan change shows its proration and changes nothing until confirmed.
    p.nav("Plan")
    p.check_page("plan")
    p.press(p.by("form[action$='/plan/preview'] button.button-primary"))
    assert "Unused time on Team" in p.text() and p.by("#proration-total").text
    p.check_page("plan-confirm")
    p.press(p.d.find_element(By.LINK_TEXT, "Keep things as they are"))

    # Invoices: open the latest, download its PDF, flag its fee line.
    p.nav("Invoices")
    p.check_page("invoices")
    inv = get_invoice(engine, tid, world.ada_invoices[-1])
    p.press(p.d.find_element(By.LINK_TEXT, inv.label))
    p.check_page("invoice")
    p.by("#download-pdf").click()
    pdf = tmp_path / f"{inv.label}.pdf"
    for _ in range(100):
        if pdf.exists() and pdf.stat().st_size > 0:
            break
        time.sleep(0.1)  # the browser writes the download on its own
    assert pdf.read_bytes().startswith(b"%PDF-")
    fee = next(ln for ln in inv.lines if ln.charge_code == "base")
    p.press(p.by(f"#line-{fee.position} a.flag-link"))
    p.check_page("dispute-form")
    p.by("#f-reason").send_keys("We moved to the free plan on the 1st")
    p.press(p.by("form button[type=submit].button-primary"))
    assert "is flagged" in p.flash() and "Our billing team is looking into it." in p.text()
    p.check_page("disputes-open")

    # Finance answers it from the console's queue (another cookie, another path: the portal session stays).
    p.open("/console/sign-in")
    p.by("#api-key").send_keys(tenant.key)
    p.press(p.by("form button[type=submit]"))
    p.open("/console/disputes")
    assert "We moved to the free plan" in p.text()
    p.check_page("finance-dispute-queue")
    amount = p.by("form.resolve input[name=amount]")
    amount.clear()
    amount.send_keys("30.00")
    p.by("form.resolve input[name=note]").send_keys("Sorry, fixed")
    p.press(p.by("form.resolve button[data-action=credit]"))
    assert "credited: CN-000001" in p.flash()
    p.check_page("finance-dispute-credited")
    p.open("/portal/disputes")
    assert "30.00 USD credited (before tax) on CN-000001" in p.text() and "Sorry, fixed" in p.text()
    p.check_page("disputes-credited")

    # Keyboard: the skip link first, then every stop shows its focus.
    from selenium.webdriver.common.keys import Keys

    p.open(f"/portal/invoices/{inv.id}")
    p.by("body").send_keys(Keys.TAB)
    first = p.d.switch_to.active_element
    assert first.get_attribute("class") == "skip-link"
    first.send_keys(Keys.ENTER)
    seen = []
    for _ in range(12):
        p.d.switch_to.active_element.send_keys(Keys.TAB)
        tag, label, style, width = p.d.execute_script(FOCUS_VISIBLE)
        if tag == "BODY":  # past the page's last stop: the browser's own controls come next
            break
        seen.append(f"{tag}:{label}")
        assert style != "none" and width >= 2, (tag, label, style, width)
    assert seen[:3] == ["A:← Invoices", "A:PDF", "A:CSV"] and "A:Report a problem" in seen, seen
    p.shot("portal-keyboard-focus")

    # Another customer's invoice id typed into the URL: not found, and nothing of theirs shows.
    p.open(f"/portal/invoices/{world.bob_invoices[-1]}")
    assert p.by("h1").text == "Not found" and "Bob" not in p.text()
    p.check_page("other-customers-invoice")

    # Signing out ends the session; the return link leads back to the app.
    p.open("/portal/")
    p.press(p.by("form[action$='/sign-out'] button"))
    assert p.by("h1").text == "You are signed out"
    assert p.d.find_element(By.LINK_TEXT, "Back to the app").get_attribute("href") == "https://app.example/account"
    p.check_page("signed-out")


def test_expired_and_altered_links_are_refused(portal: Portal, world: World, engine: Engine) -> None:
    expired = create_link(engine, world.tenant.tenant_id, "ada", datetime.now(UTC) - timedelta(hours=3), ttl_s=60)
    portal.enter(world.url + expired.path)
    assert portal.by("h1").text == "This link has expired" and "Ask for a new link" in portal.text()
    portal.check_page("link-expired")
    link = world.link()
    body, mac = link.rsplit("/", 1)[1].split(".")
    altered = body[:-4] + ("A" if body[-4] != "A" else "B") + body[-3:]
    portal.enter(f"{world.url}/portal/{altered}.{mac}")
    assert portal.by("h1").text == "This link is not valid"
    portal.check_page("link-altered")
    portal.open("/portal/balances")  # no session was opened by either
    assert "session has ended" in portal.text()
