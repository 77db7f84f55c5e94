"""The CLI: commands work, and every failure is one readable line (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tally.cli import main


def test_tenant_key_and_meter_flow(run) -> None:  # type: ignore[no-untyped-def]
    assert run("tenant", "create", "acme")[0] == 0
    code, out, _ = run("apikey", "create", "acme", "--scope", "ingest")
    assert code == 0 and out.strip().startswith("tly_") and len(out.strip()) > 40
    assert run("meter", "create", "acme", "tokens", "--aggregation", "sum", "--scale", "2")[0] == 0
    code, out, _ = run("meter", "list", "acme")
    assert code == 0 and "tokens" in out and "sum" in out
    from alembic.script import ScriptDirectory

    from tally.db import alembic_config

    code, out, _ = run("migrate")
    assert (
        code == 0
        and out.strip() == f"schema at revision {ScriptDirectory.from_config(alembic_config()).get_current_head()}"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("tenant", "create", "acme"), "already exists"),
        (("apikey", "create", "nobody"), "no tenant named 'nobody'"),
        (("meter", "create", "acme", "Bad Code!"), "invalid input: code"),
        (("meter", "create", "acme", "m", "--scale", "40"), "value_scale"),
    ],
)
def test_errors_are_one_line(run, args: tuple[str, ...], fragment: str) -> None:  # type: ignore[no-untyped-def]
    run("tenant", "create", "acme")
    code, _, err = run(*args)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in err


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none", "tenant", "list"]
    )
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "database unavailable" in result.stderr


def test_help_teaches() -> None:
    out = CliRunner().invoke(main, ["--help"]).stdout
    assert "tally serve" in out and "tally apikey create" in out


def test_meter_dimensions_usage_and_rebuild(run) -> None:  # type: ignore[no-untyped-def]
    run("tenant", "create", "acme")
    code, _, err = run("meter", "create", "acme", "gpu", "--group-by", "region", "--filter", "tier")
    assert code == 1 and "KEY=VALUE" in err and err.count("\n") == 1
    assert run("meter", "create", "acme", "gpu", "--group-by", "region", "--filter", "tier=paid,trial")[0] == 0
    code, out, _ = run("meter", "list", "acme")
    assert "region" in out and "tier=paid,trial" in out
    code, out, _ = run("meter", "rebuild", "acme")
    assert code == 0 and "matched" in out
    code, _, err = run("usage", "acme", "c1", "gpu", "--from", "2026-11-01T00:05:00Z", "--to", "2026-11-02T00:00:00Z")
    assert code == 1 and "15-minute" in err and err.count("\n") == 1
    code, _, err = run("usage", "acme", "c1", "gpu", "--from", "2026-11-01", "--to", "2026-11-02T00:00:00Z")
    assert code == 1 and "no offset" in err
    code, out, _ = run("usage", "acme", "c1", "gpu", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00Z")
    assert code == 0 and "gpu used by c1" in out


def test_gauge_and_unique_meters_and_meter_show(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from metering.event import PreparedBatch
    from metering.meter import get_meter
    from metering.store import open_store
    from metering.tenant import get_tenant
    from tally.db import make_engine

    run("tenant", "create", "acme")
    code, _, err = run("meter", "create", "acme", "mau", "--aggregation", "unique_count")
    assert code == 1 and "needs unique_property" in err and err.count("\n") == 1
    assert run("meter", "create", "acme", "mau", "--aggregation", "unique_count", "--unique-property", "user")[0] == 0
    assert run("meter", "create", "acme", "seats", "--aggregation", "gauge", "--time-unit", "hour")[0] == 0
    code, out, _ = run("meter", "show", "acme", "seats")
    assert code == 0 and "gauge, integrated per hour" in out and "editable" in out
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    tid = get_tenant(engine, "acme").id
    specs = {"seats": get_meter(engine, tid, "seats").spec}
    t0 = 1_793_491_200_000_000  # 2026-11-01T00:00:00Z
    store = open_store(engine)
    store.write([PreparedBatch(tid, "b", 2, False, [0, 1], ["s1", "s2"], ["c1", "c1"], ["seats", "seats"],
                               [t0, t0 + 3_600_000_000], [4, 6], [0, 0], [None, None], specs=specs)])  # fmt: skip
    store.close()
    engine.dispose()
    code, out, _ = run("meter", "show", "acme", "seats")
    assert code == 0 and "frozen" in out and "2026-11-01T01:00:00" in out
    code, out, _ = run("usage", "acme", "c1", "seats", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-01T03:00:00Z")
    assert code == 0 and "16.000000" in out  # 4 seats x 1 h + 6 seats x 2 h


def test_api_key_lifecycle(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from metering.errors import Unauthenticated
    from metering.tenant import KeyStore
    from tally.db import make_engine

    run("tenant", "create", "acme")
    key = run("apikey", "create", "acme", "--scope", "ingest")[1].strip()
    code, out, _ = run("apikey", "list", "acme")
    assert code == 0 and key[:12] in out and "active" in out and key not in out
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    assert KeyStore(engine).authenticate(f"Bearer {key}").scopes == frozenset({"ingest"})
    assert run("apikey", "revoke", "acme", "1")[0] == 0
    with pytest.raises(Unauthenticated):
        KeyStore(engine).authenticate(f"Bearer {key}")
    code, _, err = run("apikey", "revoke", "acme", "1")
    assert code == 1 and "no active API key 1" in err
