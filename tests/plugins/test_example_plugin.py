"""A connector as a plugin, end to end: the example package (examples/plugin) installed with
pip into this venv, then used as an operator would use it, each step in a fresh process so
that the entry points are read as installed.

- ``contact-lookup connectors list`` shows ``acme`` and the distribution it comes from;
- ``contact-lookup lookup --local`` finds a contact through it, dates normalised by the core;
- a real Celery worker process answers a queued lookup through it;
- the plugin's own tests run the product's contract suite (contact_lookup.testing.contract)
  against the Acme simulator, and pass: once with a simulator object, once from nothing but
  the connector class and the URL of a simulator in another process (``python -m crmsim
  acme``), driven through the contract's control protocol, with 0 skips.

The package is installed from a copy (a build must not write into examples/) with
``--no-deps --no-build-isolation`` (fast, offline) and uninstalled afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.testing.contract import SECRET, SEED, ConnectorContract
from crmsim.acme import AcmeSimulator
from tests.conftest import CORE_DB, ROOT, db_url, require_redis
from tests.processes import WorkerProcess, base_env

PLUGIN = ROOT / "examples" / "plugin"
BIN = Path(sys.executable).parent
GRACE = "+14155550123"  # Grace Hopper in the seed, created 2019-07-01T08:00:00+02:00


def pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    copy = tmp_path_factory.mktemp("plugin") / "plugin"
    shutil.copytree(PLUGIN, copy)
    pip("install", "--no-deps", "--no-build-isolation", str(copy))
    yield
    pip("uninstall", "-y", "contact-lookup-acme")


@pytest.fixture
def acme() -> Iterator[AcmeSimulator]:
    sim = AcmeSimulator(SEED, token=SECRET)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def env(tmp_path: Path, acme: AcmeSimulator) -> dict[str, str]:
    url = db_url(CORE_DB)
    require_redis(url)
    redis.Redis.from_url(url).flushdb()
    config = tmp_path / "cl.toml"
    config.write_text(
        f'[connections.acme]\ncrm = "acme"\nbase_url = "{acme.url}"\n'
        f'token_env = "{acme.token_env}"\nrc_account = "plugin-test"\n'
    )
    return base_env(REDIS_URL=url, CONTACT_LOOKUP_CONFIG=str(config), **{acme.token_env: SECRET})


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "contact-lookup"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def contacts(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["createdDate"]) for c in result["matchedContactInfo"]]


def test_connectors_list_shows_the_plugin_and_where_it_comes_from(
    installed: None, env: dict[str, str]
) -> None:
    done = cli(env, "connectors", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["crm"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows["acme"]["source"] == "contact_lookup_acme:AcmeConnector (contact-lookup-acme)"
    assert rows["acme"]["origin"] == "plugin"
    assert rows["acme"]["options"]["max_pages"]["default"] == 3
    assert rows["clio"]["origin"] == "built-in"


def test_lookup_local_goes_through_the_plugin(
    installed: None, env: dict[str, str], acme: AcmeSimulator
) -> None:
    done = cli(env, "lookup", GRACE, "--connection", "acme", "--local")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert contacts(result) == [("Grace Hopper", "2019-07-01T06:00:00Z")]
    assert acme.queries == [GRACE]


def test_a_worker_answers_through_the_plugin(
    installed: None, env: dict[str, str], acme: AcmeSimulator, tmp_path: Path
) -> None:
    with WorkerProcess(env, tmp_path, "plugin-worker", queues="call_pop", concurrency=2):
        done = cli(env, "lookup", GRACE, "--connection", "acme", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    assert contacts(json.loads(done.stdout)) == [("Grace Hopper", "2019-07-01T06:00:00Z")]
    assert acme.queries == [GRACE]  # the worker, not this process, asked the CRM


@pytest.fixture
def acme_process() -> Iterator[str]:
    """``python -m crmsim acme`` in a process of its own: its URL, nothing else."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "crmsim", "acme", "--port", "0", "--token", "not-the-contracts"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "acme simulator on http://127.0.0.1:PORT; ..."
        url = first.split(" on ", 1)[1].split(";", 1)[0]
        assert url.startswith("http://127.0.0.1:"), first
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_plugin_passes_the_product_contract(
    installed: None, env: dict[str, str], acme_process: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", str(PLUGIN / "tests")],
        capture_output=True,
        text=True,
        env={**env, "ACME_SIM_URL": acme_process},
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    # Every contract test ran twice (simulator object; bare URL through the control protocol
    # of a simulator in another process), and the suite's Redis is inherited, so nothing may
    # be skipped.
    cases = sum(1 for name in dir(ConnectorContract) if name.startswith("test_")) + 3
    assert summary.startswith(f"{2 * cases} passed"), summary
    assert "skipped" not in summary, done.stdout[-3000:]
