"""Journal export: one row per leg of every posted transfer, exact decimals, and debits == credits per unit."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from invoicing.documents import finalize_invoice, list_invoices, run_cycle
from invoicing.ledger import Grant, Ledger, Transfer, TransferFlags
from invoicing.ledger.journal import exact, export_journal, journal_legs, unit_totals
from invoicing.ledger.tables import ledger_transfers
from invoicing.ledger.unit import to_us
from invoicing.subscriptions import create_subscription
from metering.errors import InvalidArgument
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, publish, write_events
from tests.invoicing.test_billing_cli import Run, acme

__all__ = ["acme"]  # fixtures (run comes from tests/conftest.py)

JAN10 = datetime(2026, 1, 10, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 5, tzinfo=UTC)


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def balanced(rows: list[dict[str, str]]) -> dict[str, tuple[Decimal, Decimal]]:
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for r in rows:
        d, c = out.get(r["unit"], (Decimal(0), Decimal(0)))
        out[r["unit"]] = (d + Decimal(r["debit"] or 0), c + Decimal(r["credit"] or 0))
    return out


def test_exact() -> None:
    assert (exact(12345, 2), exact(-5, 3), exact(7, 0), exact(2**63 - 1, 2)) == (
        "123.45", "-0.005", "7", "92233720368547758.07")  # fmt: skip


@pytest.fixture
def books(engine: Engine, tenant: TenantKey, customer: str) -> int:
    """Top-ups, a grant, invoice spends, a points conversion, a posted and a voided reservation in January
    (ledger clock at Jan 10), and one top-up in March."""
    tid = tenant.tenant_id
    clock = [JAN10]
    ledger = Ledger(engine, tid, clock=lambda: clock[0])
    ledger.top_up("tu-1", customer, 2550, "USD", reference="card 4242")
    ledger.grant(Grant("welcome", customer, 1000, "USD", kind="promotional", effective_at_us=to_us(T0)))
    ledger.define_points_unit("pts", 1)
    ledger.set_rate("USD", "pts", "3", T0)
    ledger.convert("cv-1", customer, 250, "USD", "pts")  # $2.50 -> 7.5 pts
    wallet = ledger.wallet(customer, "pts")
    revenue = ledger.system_account("revenue", "pts")
    pending = TransferFlags.PENDING
    ledger.create_transfers([Transfer("hold-1", wallet, revenue, 30, code="hold", flags=pending),
                             Transfer("hold-2", wallet, revenue, 20, code="hold", flags=pending)])  # fmt: skip
    ledger.create_transfers([Transfer("post-1", None, None, 25, code="post", flags=TransferFlags.POST_PENDING,
                                      pending_id="hold-1"),
                             Transfer("void-2", None, None, None, code="void", flags=TransferFlags.VOID_PENDING,
                                      pending_id="hold-2")])  # fmt: skip
    publish(engine, tid, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "0.01"}},
    ])  # fmt: skip
    create_subscription(engine, tid, customer, "pro", T0)
    write_events(engine, tid, [(f"e{k}", customer, "api_calls", T0 + timedelta(minutes=k), 1, None) for k in range(7)])
    run_cycle(engine, tid, JAN10)  # January's fee: $30 from the grant ($10) and the cash wallet ($20), on Jan 1
    (draft,) = list_invoices(engine, tid)
    finalize_invoice(engine, tid, draft.id or 0, JAN10)  # the holds are posted, the receivable booked
    clock[0] = MAR
    ledger.top_up("tu-2", customer, 99, "USD")
    return tid


def test_every_posted_transfer_gives_two_legs_that_balance(engine: Engine, books: int) -> None:
    text = export_journal(engine, books, T0, FEB)
    rows = rows_of(text)
    assert text.splitlines()[0] == ("date,transfer_id,seq,account_id,account,account_kind,customer,unit,debit,"
                                    "credit,code,reference")  # fmt: skip
    ids = [r["transfer_id"] for r in rows]
    assert "tu-2" not in ids  # March is outside [Jan 1, Feb 1)
    assert "hold-1" not in ids and "hold-2" not in ids and "void-2" not in ids  # reservations and voids post nothing
    assert all(ids.count(i) == 2 for i in ids)
    for k in range(0, len(rows), 2):  # debit leg then credit leg, same amount
        d, c = rows[k], rows[k + 1]
        assert d["transfer_id"] == c["transfer_id"] and d["debit"] == c["credit"] and not d["credit"] and not c["debit"]
    post = [r for r in rows if r["transfer_id"] == "post-1"]
    assert [(r["account"], r["debit"], r["credit"]) for r in post] == [("points", "2.5", ""), ("revenue", "", "2.5")]
    topup = [r for r in rows if r["transfer_id"] == "tu-1"]
    assert [(r["account_kind"], r["customer"], r["debit"], r["credit"], r["reference"]) for r in topup] == [
        ("cash_in", "", "25.50", "", "card 4242"), ("cash", "cus_1", "", "25.50", "card 4242")]  # fmt: skip
    assert topup[0]["date"] == "2026-01-10T00:00:00Z"
    spends = [r for r in rows if r["code"] == "invoice_post" and r["debit"]]
    assert sum(Decimal(r["debit"]) for r in spends) == Decimal("30.00")
    assert {r["account"] for r in spends} == {"grant:welcome", "cash"}
    assert {r["account"] for r in rows if r["code"] == "invoice_post" and r["credit"]} == {"receivable"}
    booked = [(r["account"], r["debit"], r["credit"]) for r in rows if r["code"] == "invoice_revenue"]
    assert booked == [("receivable", "30.00", ""), ("revenue", "", "30.00")]  # credits paid all of it
    # Totals per unit balance: debits == credits, both in the CSV and in the integer API.
    totals = balanced(rows)
    assert set(totals) == {"USD", "pts"} and all(d == c for d, c in totals.values())
    legs = journal_legs(engine, books, T0, FEB)
    assert all(d == c for d, c in unit_totals(legs).values())
    assert unit_totals(legs)["pts"] == (75 + 25, 75 + 25)  # conversion 7.5 pts in, 2.5 posted to revenue


def test_summary_matches_the_account_totals(engine: Engine, books: int) -> None:
    ledger = Ledger(engine, books)
    rows = rows_of(export_journal(engine, books, datetime(2000, 1, 1, tzinfo=UTC), MAR + timedelta(days=1),
                                  summary=True))  # fmt: skip
    accounts = [r for r in rows if r["account"] != "total"]
    for r in accounts:  # the whole history: the journal's sums are the accounts' posted totals
        acct = ledger.account(int(r["account_id"]))
        scale = 1 if r["unit"] == "pts" else 2
        assert (r["debit"], r["credit"]) == (exact(acct.debits_posted, scale), exact(acct.credits_posted, scale))
        assert Decimal(r["net_debit"]) == Decimal(r["debit"]) - Decimal(r["credit"])
    totals = {r["unit"]: r for r in rows if r["account"] == "total"}
    assert set(totals) == {"USD", "pts"}
    for t in totals.values():
        assert t["debit"] == t["credit"] and Decimal(t["net_debit"]) == 0
        assert Decimal(t["debit"]) == sum(Decimal(r["debit"]) for r in accounts if r["unit"] == t["unit"])
    with engine.connect() as conn:
        posted = conn.execute(
            select(func.sum(ledger_transfers.c.amount)).where(
                ledger_transfers.c.tenant_id == books, ledger_transfers.c.unit == "USD",
                ledger_transfers.c.flags.op("&")(int(TransferFlags.PENDING | TransferFlags.VOID_PENDING)) == 0)
        ).scalar_one()  # fmt: skip
    assert totals["USD"]["debit"] == exact(int(posted), 2)


def test_range_must_be_valid(engine: Engine, books: int) -> None:
    with pytest.raises(InvalidArgument):
        export_journal(engine, books, FEB, T0)
    assert rows_of(export_journal(engine, books, FEB, MAR)) == []


def test_cli_journal_export(run: Run, acme: Path, tmp_path: Path) -> None:
    assert run("customer", "create", "acme", "cus_42", "--name", "Ada")[0] == 0
    assert run("plan", "create", "acme", str(acme))[0] == 0
    assert run("plan", "publish", "acme", "pro")[0] == 0
    assert run("subscription", "create", "acme", "cus_42", "pro", "--at", "2026-01-01T00:00Z")[0] == 0
    early = "2025-12-01T00:00Z"  # effective before the January fee is spent
    granted = run("grant", "create", "acme", "cus_42", "12.50", "USD", "--id", "promo-1", "--effective", early)
    assert granted[0] == 0, granted
    assert run("invoice", "run", "acme", "--as-of", "2026-01-01T00:00Z")[0] == 0
    window = ("--from", "2020-01-01T00:00Z", "--to", "2030-01-01T00:00Z")
    code, out, err = run("journal", "export", "acme", *window)
    assert code == 0, (out, err)
    assert {r["code"] for r in rows_of(out)} == {"grant"}  # the draft only holds the credit: nothing posted
    assert run("invoice", "finalize", "acme", "1")[0] == 0
    code, out, err = run("journal", "export", "acme", *window)
    rows = rows_of(out)
    assert {r["code"] for r in rows} == {"grant", "invoice_post", "invoice_revenue"}
    assert all(d == c for d, c in balanced(rows).values())
    assert sum(Decimal(r["debit"] or 0) for r in rows if r["code"] == "invoice_post") == Decimal("12.50")
    target = tmp_path / "sum.csv"
    code, out, _ = run("journal", "export", "acme", "--from", "2020-01-01T00:00Z", "--to", "2030-01-01T00:00Z",
                       "--summary", "--output", str(target))  # fmt: skip
    assert code == 0 and "wrote" in out
    (total,) = [r for r in rows_of(target.read_text()) if r["account"] == "total"]
    assert total["debit"] == total["credit"] == "55.00"  # grant 12.50 in, 12.50 posted, 30.00 booked
    code, _, err = run("journal", "export", "acme", "--from", "2026-02-01T00:00Z", "--to", "2026-01-01T00:00Z")
    assert code == 1 and "range is empty" in err
