"""A worker refuses to start with a secret no HTTP header can carry (a real worker process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.fakecrm import FakeCRM, fake_toml

CANARY = "cnry-pasted-Zq81Lw"


def test_a_worker_refuses_a_pasted_token_naming_only_its_variable(
    tmp_path: Path, redis_url: str
) -> None:
    with FakeCRM([], token=CANARY) as crm:
        toml = tmp_path / "cl.toml"
        # a variable name with nothing secret-like in it, and a value pasted from a document
        toml.write_text(fake_toml(crm).replace(crm.token_env, "FAKE_CRM_CREDENTIAL"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    env.update(
        REDIS_URL=redis_url,
        CONTACT_LOOKUP_CONFIG=str(toml),
        FAKE_CRM_CREDENTIAL=f"“{CANARY}”",
        PYTHONPATH=str(ROOT),
    )
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "solo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = worker.stdout + worker.stderr
    assert worker.returncode != 0
    assert "FAKE_CRM_CREDENTIAL" in output and "HTTP header" in output
    assert CANARY not in output
    assert " ready." not in output
