"""A whole ``make demo`` run (the demo command on a private Redis, JSON logs, the worker at
INFO): every log line is JSON, and no line holds a name, an e-mail or a full number from
the contacts file. The demo's own report on stdout shows results on purpose; logs never."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.operations.conftest import personal_data
from tests.processes import base_env


def test_demo_logs_hold_no_contact_data() -> None:
    env = base_env(LOG_FORMAT="json", DEMO_LOG_LEVEL="INFO")
    env.pop("DEMO_REDIS_URL", None)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "localredis",
            "--opt-in",
            "DEMO_REDIS_URL",
            "--",
            sys.executable,
            "-m",
            "producers.cli",
            "demo",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "every step behaved as expected" in out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line[:200]!r}") from None
    jobs = [r for r in records if r.get("outcome")]
    assert len(jobs) >= 5, "the demo's worker logged too few jobs for the scan to mean much"
    assert {r["outcome"] for r in jobs} >= {"matched", "failed"}
    leaks = [(needle, line) for line in lines for needle in personal_data() if needle in line]
    assert not leaks, leaks[:3]
    # The demo's report itself does show contacts (that is its job), so the scan can fail.
    assert any(needle in out.stdout for needle in personal_data())
