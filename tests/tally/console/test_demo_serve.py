"""`tally demo --serve`: after the demo it prints the console's URL and keys and a customer's portal link, and
keeps serving until Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.tally.console.conftest import sign_in


def test_demo_serve_prints_the_console_url_and_keeps_serving(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "tally.cli", "demo", "--dir", str(tmp_path / "demo"), "--customers", "3",
           "--serve", "--http-port", "0"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "250"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "the JSON API is under" in line:
                break
        text = "".join(seen)
        url = re.search(r"the finance console: (http://\S+/console/)", text)
        admin = re.search(r"admin key (tly_\S+)", text)
        read = re.search(r"the read key (tly_\S+)", text)
        portal = re.search(r"a customer's portal \((cus_\d+), valid 24 h\): (http://\S+)", text)
        assert url and admin and read and portal, text[-2000:]
        base = url.group(1).removesuffix("/console/")
        assert httpx.get(url.group(1)).status_code == 303  # to sign in
        for key, badge in ((admin.group(1), "admin key"), (read.group(1), "read-only key")):
            home = sign_in(base, key).get("/console/")
            assert home.status_code == 200 and badge in home.text and "Last invoice run" in home.text
        assert portal.group(2).startswith(base)
        with httpx.Client(follow_redirects=True) as customer:
            assert customer.get(portal.group(2)).status_code == 200  # the landing page sets the session
            page = customer.get(f"{base}/portal/")
            assert page.status_code == 200 and "Usage this period" in page.text, page.text[:500]
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest[-2000:]
