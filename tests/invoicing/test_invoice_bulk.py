"""Invoice filters, references and bulk actions (finalize, void, mark paid, export), on SQLite and PostgreSQL.

The world: three customers billed from January 1st and invoiced as of February 1st, two documents each (the
January fee on Jan 1; January's usage and February's fee on Feb 1): cus_a and cus_b on `pro`, cus_c on `lite`.
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import (
    ACTIONS,
    APPLIES_TO,
    STATUSES,
    InvoiceFilter,
    Walk,
    bulk_export,
    bulk_finalize,
    bulk_mark_paid,
    bulk_void,
    correct_invoice,
    finalize_invoice,
    get_invoice,
    invoice_page,
    list_invoices,
    mark_paid,
    parse_invoice_reference,
    resolve_invoice,
    run_cycle,
    skip_reason,
)
from invoicing.documents._bulk import _walk
from invoicing.subscriptions import create_subscription
from metering.deadline import Budget, bounded
from metering.errors import InvalidArgument, NotFound
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import T0, flat, publish, write_events

FEB = datetime(2026, 2, 1, tzinfo=UTC)
NOW = datetime(2026, 2, 2, 9, tzinfo=UTC)
CALLS = {"code": "calls", "kind": "usage", "meter": "api_calls",
         "price": {"model": "per_unit", "unit_amount": "0.01"}}  # fmt: skip


def world(engine: Engine, tenant_id: int, names: dict[str, str] | None = None) -> list[int]:
    """Six drafts, by id: (cus_a Jan, cus_b Jan, cus_c Jan, cus_a Feb, cus_b Feb, cus_c Feb) in some id order;
    returns the ids ascending."""
    publish(engine, tenant_id, "pro", [{"code": "base", "kind": "flat", "price": flat("30")}, CALLS])
    publish(engine, tenant_id, "lite", [{"code": "base", "kind": "flat", "price": flat("10")}])
    for cus, plan in (("cus_a", "pro"), ("cus_b", "pro"), ("cus_c", "lite")):
        name = (names or {}).get(cus, cus.upper())
        create_customer(engine, tenant_id, CustomerDefinition(external_id=cus, name=name, timezone="UTC"), T0)
        create_subscription(engine, tenant_id, cus, plan, T0)
    write_events(engine, tenant_id, [(f"e{k}", "cus_a", "api_calls", T0 + timedelta(hours=k), 1, None)
                                     for k in range(100)])  # fmt: skip
    run_cycle(engine, tenant_id, FEB)
    ids = [i.id or 0 for i in list_invoices(engine, tenant_id)]
    assert len(ids) == 6
    return ids


def statuses(engine: Engine, tenant_id: int) -> dict[int, str]:
    return {i.id or 0: i.status for i in list_invoices(engine, tenant_id)}


# --- filters and pages -----------------------------------------------------------------------------------------
def test_filters_by_customer_status_plan_and_period(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    ids = world(engine, tid)

    def found(**kw: object) -> list[tuple[str, datetime]]:
        page = invoice_page(engine, tid, InvoiceFilter(**kw), limit=100)  # type: ignore[arg-type]
        assert page.next_after_id is None
        return sorted((i.customer_external_id, i.due_at) for i in page.invoices)

    assert found(customer="cus_a") == [("cus_a", T0), ("cus_a", FEB)]
    assert found(plan="lite") == [("cus_c", T0), ("cus_c", FEB)]
    assert found(plan="pro", start=FEB) == [("cus_a", FEB), ("cus_b", FEB)]
    assert found(end=FEB) == [("cus_a", T0), ("cus_b", T0), ("cus_c", T0)]  # [start, end): FEB excluded
    assert found(status="finalized") == []
    assert found(date="issued", start=T0) == []  # drafts are not issued
    # Issue two; the issue-date period finds exactly them.
    finalize_invoice(engine, tid, ids[0], NOW)
    finalize_invoice(engine, tid, ids[1], NOW + timedelta(days=3))
    assert len(found(status="finalized")) == 2
    assert len(found(date="issued", start=NOW, end=NOW + timedelta(days=1))) == 1
    assert len(found(date="issued", start=NOW)) == 2
    assert len(found(customer="cus_c", plan="pro")) == 0  # every criterion must hold
    # The older keywords still work.
    assert [i.id for i in list_invoices(engine, tid, customer="cus_a", status="draft")] == [
        i.id for i in invoice_page(engine, tid, InvoiceFilter(customer="cus_a", status="draft")).invoices
    ]


def test_pages_say_when_more_follow(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    ids = world(engine, tid)
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        page = invoice_page(engine, tid, after_id=after, limit=4)
        seen += [i.id or 0 for i in page.invoices]
        pages += 1
        if page.next_after_id is None:
            break
        assert page.next_after_id == page.invoices[-1].id
        after = page.next_after_id
    assert (seen, pages) == (ids, 2)
    # A page that ends exactly at the last invoice says there is no more.
    assert invoice_page(engine, tid, limit=6).next_after_id is None
    assert invoice_page(engine, tid, limit=5).next_after_id == ids[4]


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"status": "owed"}, "status 'owed': one of draft"),
        ({"date": "paid"}, "date 'paid': due"),
        ({"start": FEB, "end": T0}, "is not before end"),
        ({"start": FEB, "end": FEB}, "is not before end"),
        ({"start": datetime(2026, 1, 1)}, "has no time zone"),
        ({"customer": ""}, "customer: give the customer's external id"),
        ({"plan": ""}, "plan: give a plan code"),
    ],
)
def test_a_bad_filter_names_its_field(kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        InvoiceFilter(**kw)  # type: ignore[arg-type]


def test_unknown_customer_or_plan_is_not_found(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    world(engine, tid)
    with pytest.raises(NotFound, match="no customer 'cus_x'"):
        invoice_page(engine, tid, InvoiceFilter(customer="cus_x"))
    with pytest.raises(NotFound, match="no plan 'gold'"):
        bulk_finalize(engine, tid, InvoiceFilter(plan="gold"), NOW)
    assert set(statuses(engine, tid).values()) == {"draft"}


# --- references ------------------------------------------------------------------------------------------------
def test_an_invoice_is_named_by_id_or_number(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    ids = world(engine, tid)
    finalize_invoice(engine, tid, ids[2], NOW)
    for text in ("INV-000001", "inv-1", "INV1", " INV-000001 "):
        assert resolve_invoice(engine, tid, text) == ids[2], text
    assert resolve_invoice(engine, tid, str(ids[3])) == ids[3]
    assert resolve_invoice(engine, tid, ids[3]) == ids[3]
    assert resolve_invoice(engine, tid, f"draft {ids[4]}") == ids[4]
    with pytest.raises(NotFound, match="no invoice numbered INV-000002"):
        resolve_invoice(engine, tid, "INV-2")
    with pytest.raises(NotFound, match="no invoice numbered CN-000001"):
        resolve_invoice(engine, tid, "CN-000001")
    with pytest.raises(InvalidArgument, match="neither an id"):
        resolve_invoice(engine, tid, "ABC-1")
    # Another tenant's INV-000001 is not this tenant's.
    other = make_tenant(engine, "globex").tenant_id
    with pytest.raises(NotFound):
        resolve_invoice(engine, other, "INV-000001")


@given(series=st.sampled_from([("invoice", "INV"), ("credit_note", "CN")]), number=st.integers(1, 2**31 - 1),
       pad=st.booleans(), dash=st.booleans(), lower=st.booleans())  # fmt: skip
def test_every_spelling_of_a_number_parses_to_it(
    series: tuple[str, str], number: int, pad: bool, dash: bool, lower: bool
) -> None:
    prefix = series[1].lower() if lower else series[1]
    text = f"{prefix}{'-' if dash else ''}{number:06d}" if pad else f"{prefix}{'-' if dash else ''}{number}"
    assert parse_invoice_reference(text) == (series[0], number)


@pytest.mark.parametrize("text", ["", "0", "-3", "INV-", "X-12", "INV 12", "12.5", "9" * 20, "INV-" + "9" * 5000])
def test_a_malformed_reference_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_invoice_reference(text)


# --- the status rules ------------------------------------------------------------------------------------------
def test_each_action_applies_only_where_its_rules_allow() -> None:
    """Exhaustive over actions, statuses and kinds: an action applies only to a status it lists, and every
    status it lists applies to a plain invoice."""
    for action in ACTIONS:
        for status in STATUSES:
            for kind in ("invoice", "adjustment", "credit_note"):
                reason = skip_reason(action, status, kind)
                if reason is None:
                    assert status in APPLIES_TO[action], (action, status, kind)
                else:
                    assert reason, (action, status, kind)
            assert (skip_reason(action, status, "invoice") is None) == (status in APPLIES_TO[action])
    assert skip_reason("void", "finalized", "credit_note") is not None
    assert skip_reason("mark_paid", "finalized", "credit_note") is not None
    with pytest.raises(InvalidArgument, match="action 'delete'"):
        skip_reason("delete", "draft", "invoice")


# --- finalize --------------------------------------------------------------------------------------------------
def test_finalize_all_numbers_in_id_order_and_a_rerun_skips(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    ids = world(engine, tid)
    dry = bulk_finalize(engine, tid, InvoiceFilter(), NOW, Walk(dry_run=True))
    assert (dry.done, dry.done_ids, dry.skipped, dry.failed) == (6, ids, {}, 0)
    assert set(statuses(engine, tid).values()) == {"draft"}  # a dry run changes nothing
    seen: list[tuple[int, int]] = []
    first = bulk_finalize(
        engine, tid, InvoiceFilter(), NOW, Walk(batch_size=4, progress=lambda d, t: seen.append((d, t)))
    )
    assert (first.done, first.failed, first.examined, first.next_after_id) == (6, 0, 6, None)
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    numbered = [get_invoice(engine, tid, i) for i in ids]
    assert [inv.label for inv in numbered] == [f"INV-{n:06d}" for n in range(1, 7)]
    again = bulk_finalize(engine, tid, InvoiceFilter(), NOW)
    assert (again.done, again.skipped, again.failed) == (0, {"already finalized": 6}, 0)
    assert [get_invoice(engine, tid, i).number for i in ids] == [1, 2, 3, 4, 5, 6]


def test_finalize_all_by_plan_leaves_the_others(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    world(engine, tid)
    summary = bulk_finalize(engine, tid, InvoiceFilter(plan="lite"), NOW)
    assert summary.done == 2
    after = {i.customer_external_id + i.status for i in list_invoices(engine, tid)}
    assert after == {"cus_cfinalized", "cus_adraft", "cus_bdraft"}


def test_a_refused_invoice_is_counted_and_the_walk_goes_on(engine: Engine, tenant: TenantKey) -> None:
    """A finalized invoice with a finalized correction cannot be voided (a credit note is needed): void-all
    counts it as failed with the rule's message and goes on to void the correction after it."""
    tid = tenant.tenant_id
    world(engine, tid)
    feb_a = next(i for i in list_invoices(engine, tid, customer="cus_a") if i.due_at == FEB)
    finalize_invoice(engine, tid, feb_a.id or 0, NOW)
    write_events(engine, tid, [(f"late{k}", "cus_a", "api_calls", T0 + timedelta(days=3, minutes=k), 1, None)
                               for k in range(50)])  # fmt: skip
    correction = correct_invoice(engine, tid, feb_a.id or 0, NOW)
    assert correction is not None and correction.corrects_invoice_id == feb_a.id
    finalize_invoice(engine, tid, correction.id or 0, NOW)
    summary = bulk_void(engine, tid, InvoiceFilter(customer="cus_a", status="finalized"), NOW, "wrong usage")
    assert (summary.done, summary.done_ids, summary.failed) == (1, [correction.id], 1)
    assert summary.errors[0].startswith(f"INV-000001 (id {feb_a.id}): ") and "credit note" in summary.errors[0]
    assert get_invoice(engine, tid, feb_a.id or 0).status == "finalized"


def test_an_invoice_changed_since_the_scan_is_skipped_not_failed(engine: Engine, tenant: TenantKey) -> None:
    """Another writer finalizes each invoice between the scan and the action: the refusal is a skip."""
    tid = tenant.tenant_id
    world(engine, tid)

    def act(invoice_id: int) -> bool:
        finalize_invoice(engine, tid, invoice_id, NOW)  # the other writer
        finalize_invoice(engine, tid, invoice_id, NOW)  # ours: refused, it is no longer a draft
        return True

    summary = _walk(engine, tid, InvoiceFilter(), "finalize", act, Walk(batch_size=10))
    assert (summary.done, summary.failed, summary.skipped) == (0, 0, {"already finalized": 6})


def test_limit_and_after_walk_in_pieces(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    ids = world(engine, tid)
    one = bulk_finalize(engine, tid, InvoiceFilter(), NOW, Walk(limit=4, batch_size=3))
    assert (one.examined, one.done, one.next_after_id, one.stopped_by) == (4, 4, ids[3], "limit")
    two = bulk_finalize(engine, tid, InvoiceFilter(), NOW, Walk(limit=2, after_id=one.next_after_id or 0))
    assert (two.examined, two.done, two.next_after_id) == (2, 2, None)  # the limit ended exactly at the last
    with pytest.raises(InvalidArgument, match="limit 0"):
        bulk_finalize(engine, tid, InvoiceFilter(), NOW, Walk(limit=0))


def test_a_request_budget_ends_the_walk_early_with_a_cursor(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    ids = world(engine, tid)
    budget = Budget(60.0)
    budget.deadline = time.monotonic() + 2.0  # less than a quarter of 60 s left
    with bounded(budget):
        summary = bulk_finalize(engine, tid, InvoiceFilter(), NOW)
    assert (summary.done, summary.next_after_id, summary.stopped_by) == (1, ids[0], "time")


# --- void and mark paid ----------------------------------------------------------------------------------------
def test_void_all_needs_a_reason_and_a_filter(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    world(engine, tid)
    with pytest.raises(InvalidArgument, match="reason is required"):
        bulk_void(engine, tid, InvoiceFilter(status="draft"), NOW, " ")
    with pytest.raises(InvalidArgument, match="the filter is empty"):
        bulk_void(engine, tid, InvoiceFilter(), NOW, "cleanup")
    assert set(statuses(engine, tid).values()) == {"draft"}


def test_void_and_pay_follow_the_status_rules_and_rerun_safely(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    ids = world(engine, tid)
    for i in ids[:4]:
        finalize_invoice(engine, tid, i, NOW)
    mark_paid(engine, tid, ids[0], NOW)
    # Pay every open one: ids[1..3]; ids[0] is paid, ids[4..5] drafts.
    paid = bulk_mark_paid(engine, tid, InvoiceFilter(), NOW)
    assert (paid.done, paid.done_ids, paid.failed) == (3, ids[1:4], 0)
    assert paid.skipped == {"already paid": 1, "a draft (finalize it first)": 2}
    again = bulk_mark_paid(engine, tid, InvoiceFilter(), NOW)
    assert (again.done, again.skipped) == (0, {"already paid": 4, "a draft (finalize it first)": 2})
    assert all(get_invoice(engine, tid, i).amount_paid == get_invoice(engine, tid, i).total for i in ids[:4])
    # Void what can be: the two drafts; paid ones need a credit note.
    void = bulk_void(engine, tid, InvoiceFilter(start=T0), NOW, "wrong prices")
    assert (void.done, void.done_ids) == (2, ids[4:])
    assert void.skipped == {"has payments (issue a credit note instead)": 4}
    assert all(get_invoice(engine, tid, i).status == "void" for i in ids[4:])
    again = bulk_void(engine, tid, InvoiceFilter(start=T0), NOW, "wrong prices")
    assert (again.done, again.skipped["already void"]) == (0, 2)


def test_void_all_voids_unpaid_finalized_ones_and_releases_their_items(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    world(engine, tid)
    bulk_finalize(engine, tid, InvoiceFilter(customer="cus_b"), NOW)
    summary = bulk_void(engine, tid, InvoiceFilter(customer="cus_b"), NOW, "billed twice", reissue=True)
    assert (summary.done, summary.failed) == (2, 0)
    assert run_cycle(engine, tid, FEB + timedelta(hours=1)).created == 2  # re-issued: the run bills cus_b's items again


# --- export ----------------------------------------------------------------------------------------------------
def test_export_all_writes_every_format_and_a_rerun_writes_nothing(
    engine: Engine, tenant: TenantKey, tmp_path: Path
) -> None:
    tid = tenant.tenant_id
    ids = world(engine, tid)
    bulk_finalize(engine, tid, InvoiceFilter(customer="cus_a"), NOW)
    folder = tmp_path / "exports" / "jan"
    summary = bulk_export(engine, tid, InvoiceFilter(customer="cus_a"), folder, ["pdf", "csv", "json"])
    assert (summary.done, summary.failed) == (2, 0)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"INV-00000{n}.{ext}" for n in (1, 2) for ext in ("pdf", "csv", "json"))
    reader = PdfReader(folder / "INV-000001.pdf")
    assert len(reader.pages) >= 1 and "INV-000001" in reader.pages[0].extract_text()
    rows = list(csv.DictReader(io.StringIO((folder / "INV-000002.csv").read_text())))
    assert {r["label"] for r in rows} == {"INV-000002"} and {r["customer"] for r in rows} == {"cus_a"}
    assert json.loads((folder / "INV-000001.json").read_text())["customer"] == "cus_a"
    again = bulk_export(engine, tid, InvoiceFilter(customer="cus_a"), folder, ["pdf", "csv", "json"])
    assert (again.done, again.files, again.skipped) == (0, [], {"unchanged since the last export": 2})
    # Drafts are exported under their label; a document that changed (now paid) is written again.
    mark_paid(engine, tid, list_invoices(engine, tid, customer="cus_a")[0].id or 0, NOW)
    everything = bulk_export(engine, tid, InvoiceFilter(), folder, ["json"])
    assert everything.done == 5 and everything.skipped == {"unchanged since the last export": 1}
    assert sorted(p.name for p in everything.files if p.name.startswith("draft-")) == sorted(
        f"draft-{i}.json" for i in ids if get_invoice(engine, tid, i).number is None
    )


def test_export_all_counts_a_document_that_cannot_be_set_and_writes_nothing_for_it(
    engine: Engine, tenant: TenantKey, tmp_path: Path
) -> None:
    tid = tenant.tenant_id
    world(engine, tid, names={"cus_b": "தமிழ் Analytics"})
    summary = bulk_export(engine, tid, InvoiceFilter(), tmp_path, ["json", "pdf"])
    assert (summary.done, summary.failed) == (4, 2)
    assert "U+0BA4" in summary.errors[0]
    assert len(list(tmp_path.glob("*.pdf"))) == 4 and len(list(tmp_path.glob("*.json"))) == 4  # none of cus_b's


def test_export_all_refuses_a_file_as_folder_and_unknown_formats(
    engine: Engine, tenant: TenantKey, tmp_path: Path
) -> None:
    tid = tenant.tenant_id
    world(engine, tid)
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(InvalidArgument, match="is a file"):
        bulk_export(engine, tid, InvoiceFilter(), target)
    with pytest.raises(InvalidArgument, match="format 'docx'"):
        bulk_export(engine, tid, InvoiceFilter(), tmp_path / "new", ["docx"])
    assert not (tmp_path / "new").exists()
    dry = bulk_export(engine, tid, InvoiceFilter(), tmp_path / "dry", walk=Walk(dry_run=True))
    assert dry.done == 6 and not (tmp_path / "dry").exists()
