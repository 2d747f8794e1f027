"""A real worker (``contact-lookup worker``) runs ``contact-lookup check``'s items at start
(worker.checks): it refuses, with one line naming the item, a broker that refuses its
password, a result backend that may evict, a CRM that rejects the credentials; it starts,
with a warning, when a CRM cannot be reached. The Clio simulator answers over HTTP (its 401
for a wrong bearer token follows Clio's API documentation, see crmsim/clio.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from crmsim.clio import ClioSimulator
from localredis import EmbeddedRedis
from tests.conftest import EXAMPLES, ROOT
from tests.operations.conftest import command, start
from tests.processes import Proc, base_env

TOKEN = "clio-start-token-51d0"


@pytest.fixture
def clio() -> Iterator[ClioSimulator]:
    with ClioSimulator(json.loads((EXAMPLES / "contacts.json").read_text()), token=TOKEN) as sim:
        yield sim


def add_clio(connections: Path, base_url: str) -> None:
    connections.write_text(
        connections.read_text() + f'\n[connections.acme]\ncrm = "clio"\nbase_url = "{base_url}"\n'
        'token_env = "ACME_START_TOKEN"\nrc_account = "1"\n'
    )


def worker(tmp_path: Path, env: dict[str, str], name: str) -> Proc:
    args = command("worker", "-Q", "call_log", "-n", f"{name}@%h", "--without-mingle")
    return Proc([*args, "--without-gossip"], env, tmp_path, name)


def refusal(proc: Proc) -> list[str]:
    """The worker's exit status must be 2 and it never ready; its 'not starting' lines."""
    proc.launch()
    assert proc.proc is not None
    code = proc.proc.wait(60)
    logs = proc.logs()
    assert code == 2, logs[-2000:]
    assert " ready." not in logs
    return [line for line in logs.splitlines() if "not starting:" in line]


def test_a_worker_refuses_a_crm_that_rejects_its_credentials(
    ops_url: str, connections: Path, clio: ClioSimulator, tmp_path: Path
) -> None:
    add_clio(connections, clio.url)
    env = base_env(
        REDIS_URL=ops_url,
        CONTACT_LOOKUP_CONFIG=str(connections),
        ACME_START_TOKEN="not-the-clio-token",
        STARTUP_CRM_PROBE="on",
    )
    lines = refusal(worker(tmp_path, env, "badcreds"))
    assert len(lines) == 1, lines
    assert "connection acme: the CRM rejected the credentials" in lines[0]
    assert clio.requests == 1  # one probe, no lookup


def test_a_worker_starts_when_a_crm_is_unreachable_and_probes_the_others(
    ops_url: str, connections: Path, clio: ClioSimulator, tmp_path: Path
) -> None:
    add_clio(connections, clio.url)
    connections.write_text(
        connections.read_text()
        + '\n[connections.down]\ncrm = "clio"\nbase_url = "http://127.0.0.1:9"\n'
        'token_env = "ACME_START_TOKEN"\nrc_account = "2"\n'
    )
    env = base_env(
        REDIS_URL=ops_url,
        CONTACT_LOOKUP_CONFIG=str(connections),
        ACME_START_TOKEN=TOKEN,
        STARTUP_CRM_PROBE="on",
    )
    proc = start(worker(tmp_path, env, "crmdown"))
    proc.stop()
    logs = proc.logs()
    assert "not starting" not in logs
    warned = [line for line in logs.splitlines() if "starting anyway:" in line]
    assert len(warned) == 1 and "connection down: the CRM could not be reached" in warned[0]
    assert clio.requests == 1  # the reachable CRM was probed once
    assert TOKEN not in logs


def test_a_worker_refuses_an_evicting_result_backend(
    ops_url: str, connections: Path, tmp_path: Path
) -> None:
    evicting = EmbeddedRedis().start()
    try:
        with redis.Redis.from_url(evicting.url) as client:
            client.config_set("maxmemory-policy", "allkeys-lru")
        env = base_env(
            REDIS_URL=ops_url, CONTACT_LOOKUP_CONFIG=str(connections), RESULT_BACKEND=evicting.url
        )
        lines = refusal(worker(tmp_path, env, "evicting"))
    finally:
        evicting.cleanup()
    assert len(lines) == 1, lines
    assert "result backend:" in lines[0] and "maxmemory-policy allkeys-lru" in lines[0]


def test_a_worker_refuses_a_broker_that_refuses_its_password(
    connections: Path, tmp_path: Path
) -> None:
    password = "right-Pw-1f9c"
    server = EmbeddedRedis(password=password).start()
    try:
        base = f"redis://:wrong-Pw-77@127.0.0.1:{server.port}"
        good = f"redis://:{password}@127.0.0.1:{server.port}"
        env = base_env(
            REDIS_URL=f"{good}/0",
            BROKER_URL=f"{base}/0",
            CONTACT_LOOKUP_CONFIG=str(connections),
        )
        lines = refusal(worker(tmp_path, env, "badbroker"))
    finally:
        server.cleanup()
    assert len(lines) == 1, lines
    assert "broker:" in lines[0] and "refused the connection" in lines[0]
    assert "wrong-Pw-77" not in "".join(lines)  # the URL is shown redacted


def test_an_oauth_connection_without_a_grant_is_a_warning_not_a_refusal(
    ops_url: str, tmp_path: Path
) -> None:
    """OAuth grants are made at run time (``contact-lookup auth connect``), some per extension
    only: a connection whose store holds no grant yet must not stop a worker."""
    from crmsim.oauth import enable
    from tests.auth.authkit import KEY, write_config

    with ClioSimulator(json.loads((EXAMPLES / "contacts.json").read_text())) as sim:
        oauth = enable(sim)
        toml = write_config(tmp_path / "oauth.toml", "crm", oauth.connection())
        env = base_env(
            REDIS_URL=ops_url,
            CONTACT_LOOKUP_CONFIG=str(toml),
            TOKEN_ENCRYPTION_KEY=KEY,
            STARTUP_CRM_PROBE="on",
            **oauth.env(),
        )
        proc = start(worker(tmp_path, env, "oauthless"))
        proc.stop()
    logs = proc.logs()
    assert "not starting" not in logs
    warned = [line for line in logs.splitlines() if "starting anyway:" in line]
    assert len(warned) == 1 and "connection crm:" in warned[0] and "OAuth" in warned[0], warned


def test_a_worker_refuses_an_oauth_connection_whose_client_secret_is_unset(
    ops_url: str, tmp_path: Path
) -> None:
    """The start-up check read ``token_env`` only: an OAuth connection without its client
    secret let the worker start, and every token refresh failed later. It must refuse,
    naming the variable and never a value."""
    from crmsim.oauth import enable
    from tests.auth.authkit import KEY, write_config

    with ClioSimulator(json.loads((EXAMPLES / "contacts.json").read_text())) as sim:
        oauth = enable(sim)
        toml = write_config(tmp_path / "oauth.toml", "crm", oauth.connection())
        secrets = oauth.env()
        del secrets[oauth.client_secret_env]
        env = base_env(
            REDIS_URL=ops_url,
            CONTACT_LOOKUP_CONFIG=str(toml),
            TOKEN_ENCRYPTION_KEY=KEY,
            STARTUP_CRM_PROBE="on",
            **secrets,
        )
        env.pop(oauth.client_secret_env, None)
        lines = refusal(worker(tmp_path, env, "oauthsecret"))
        assert sim.requests == 0  # not probed
    assert len(lines) == 2, lines
    assert f"not starting: secret {oauth.client_secret_env}: environment variable" in lines[0]
    assert "is not set" in lines[0]
    assert "not starting: connection crm: not probed: a secret is missing" in lines[1]
    assert oauth.client_id not in "".join(lines)


def test_worker_help_shows_our_options_and_celerys(tmp_path: Path) -> None:
    """`contact-lookup worker --help` printed Celery's help only: no --metrics-port."""
    env = {k: v for k, v in base_env().items() if k != "CONTACT_LOOKUP_CONFIG"}
    env["REDIS_URL"] = "not-a-url"  # --help reads no environment
    done = subprocess.run(
        command("worker", "--help"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--metrics-port [HOST:]PORT" in done.stdout
    assert "--concurrency" in done.stdout and "--queues" in done.stdout  # Celery's own
    assert done.stdout.index("--metrics-port") < done.stdout.index("--concurrency")
