"""The import contracts in pyproject.toml ([tool.importlinter]) hold: imports point down the layers
(tally → invoicing → metering → rating, and invoicing's sub-packages lowest last), only `tally` touches
gRPC and the generated code, and the SDK never loads the server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and "kept" in done.stdout, done.stdout
