"""The committed generated code is exactly what the .proto contracts generate."""

from __future__ import annotations

from pathlib import Path

from tally.protogen import ROOT, generate


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "protoc wrote nothing"
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = ROOT / rel
        assert committed.exists(), f"{rel} is generated but not committed: run python -m tally.protogen"
        assert committed.read_text() == path.read_text(), f"{rel} is stale: run python -m tally.protogen"
