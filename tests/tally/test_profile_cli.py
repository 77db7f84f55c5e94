"""`tally profile show/set` and the customer's `--tax-id`/`--invoice-grouping`: they work, and every
mistake is one readable line naming the option or field to fix."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import CliRun


def one_line(result: tuple[int, str, str]) -> str:
    code, _, err = result
    assert code != 0, result
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def acme(run: CliRun) -> None:
    assert run("tenant", "create", "acme")[0] == 0


def test_show_defaults_then_set_and_show(run: CliRun, acme: None, tmp_path: Path) -> None:
    code, out, _ = run("profile", "show", "acme")
    assert code == 0 and "Net 30" in out and "not set" in out and "never (defaults)" in out, out
    logo = tmp_path / "logo.png"
    buf = io.BytesIO()
    Image.new("RGB", (90, 30), (0, 80, 160)).save(buf, format="PNG")
    logo.write_bytes(buf.getvalue())
    code, out, err = run(
        "profile", "set", "acme", "--legal-name", "Acme Metering SAS", "--tax-id", "FR40123456789",
        "--address", '{"line1": "3 avenue de l\'Opéra", "city": "Paris", "country": "FR"}', "--terms-days", "0",
        "--instructions", "IBAN FR76 3000 6000", "--logo", str(logo), "--issue-zero-total", "--grouping",
        "subscription",
    )  # fmt: skip
    assert code == 0, (out, err)
    assert "updated" in out and "terms Due on receipt" in out
    code, out, _ = run("profile", "show", "acme")
    assert code == 0
    for needle in ("Acme Metering SAS", "FR40123456789", "Paris", "Due on receipt (0 days)", "IBAN FR76 3000 6000",
                   "PNG", "issued", "per subscription"):  # fmt: skip
        assert needle in out, (needle, out)
    # Only the options given change; --clear-logo removes the logo.
    assert run("profile", "set", "acme", "--terms-days", "45", "--clear-logo", "--no-issue-zero-total")[0] == 0
    code, out, _ = run("profile", "show", "acme")
    assert "Net 45" in out and "Acme Metering SAS" in out and "not issued" in out
    assert "| none" in out.replace("│", "|") or " none " in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--terms-days", "400"), "payment_terms_days is 400"),
        (("--tax-id", "X" * 65), "tax_id is 65 characters"),
        (("--address", "{nope"), "--address is not JSON"),
        (("--address", '{"country": "France"}'), "country"),
        ((), "nothing to change"),
        (("--logo", "LOGO", "--clear-logo"), "contradict"),
    ],
)
def test_set_mistakes_are_one_line(
    run: CliRun, acme: None, tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"not an image")
    line = one_line(run("profile", "set", "acme", *[str(logo) if a == "LOGO" else a for a in args]))
    assert fragment in line, line


def test_a_file_that_is_not_an_image_is_refused(run: CliRun, acme: None, tmp_path: Path) -> None:
    fake = tmp_path / "logo.png"
    fake.write_bytes(b"GIF89a" + b"\x00" * 16)
    line = one_line(run("profile", "set", "acme", "--logo", str(fake)))
    assert "logo is not a PNG or JPEG" in line
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * (300 * 1024))
    assert "256 KiB" in one_line(run("profile", "set", "acme", "--logo", str(huge)))
    assert "no tenant named 'nobody'" in one_line(run("profile", "show", "nobody"))


def test_customer_tax_id_and_grouping(run: CliRun, acme: None) -> None:
    code, out, err = run("customer", "create", "acme", "cus_42", "--tax-id", "FR98765432101",
                         "--invoice-grouping", "subscription")  # fmt: skip
    assert code == 0, (out, err)
    code, out, _ = run("customer", "show", "acme", "cus_42")
    assert "FR98765432101" in out and "subscription" in out
    code, out, err = run("customer", "update", "acme", "cus_42", "--tax-id", "DE123456789", "--invoice-grouping",
                         "tenant")  # fmt: skip
    assert code == 0 and "tax_id" in out and "invoice_grouping" in out, (out, err)
    code, out, _ = run("customer", "show", "acme", "cus_42")
    assert "DE123456789" in out and "the tenant's" in out
    assert "tax_id" in one_line(run("customer", "update", "acme", "cus_42", "--tax-id", "X" * 65))
    assert "nothing to change" in one_line(run("customer", "update", "acme", "cus_42"))
    assert "no customer 'cus_9'" in one_line(run("customer", "update", "acme", "cus_9", "--name", "X"))
