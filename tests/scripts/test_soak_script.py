"""``make soak`` in small (issue 10.5, PostgreSQL): mixed traffic from logged-in customers and
two billing runners at once, with zero errors and each due subscription renewed once.

It runs ``scripts/soak.py`` as ``make soak`` does, with tiny sizes, on its own database
(``pakiet_soak_test``, created and dropped) of the test server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTIONS = 100


def test_a_short_soak_has_no_errors_and_no_double_effects(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.fail("the soak's load generator needs Node.js (installed by make install)")
    server = DATABASE_URL.rsplit("/", 1)[0]
    results = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            "scripts/soak.py",
            "--server",
            server,
            "--database",
            "pakiet_soak_test",
            "--accounts",
            str(SUBSCRIPTIONS),
            "--shoppers",
            "8",
            "--readers",
            "8",
            "--invoices",
            "1000",
            "--duration",
            "10",
            "--json",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    result = json.loads(results.read_text())

    traffic, billing = result["traffic"], result["billing"]
    assert traffic["errors"] == 0 and result["problems"] == []
    assert traffic["requests"] > 20  # it did drive the portal
    assert {"My package", "live summary (HTMX)"} <= set(traffic["kinds"])
    assert billing["renewed"] == SUBSCRIPTIONS and billing["catch_up"]["renewed"] == 0
    assert all(r["renewed"] > 0 for r in billing["runners"])  # both runners took a share
    assert [c for c in result["checks"] if c[1] != c[2]] == []
    assert len(result["checks"]) > 20
