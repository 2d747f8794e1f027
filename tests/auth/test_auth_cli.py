"""The ``contact-lookup auth`` commands, run as the operator runs them (a subprocess), against
an OAuth simulator and the test Redis: connect (local listener and pasted redirect), seed,
status, revoke. No command ever prints a token."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import redis
import requests

from crmsim.hubspot import HubSpotSimulator
from crmsim.pipedrive import PipedriveSimulator
from tests.auth.authkit import KEY, manager, oauth_sim, write_config
from tests.conftest import ROOT
from tests.processes import base_env


def cli_env(redis_url: str, toml: Path, extra: dict[str, str]) -> dict[str, str]:
    env = base_env(**extra, REDIS_URL=redis_url, CONTACT_LOOKUP_CONFIG=str(toml),
                   TOKEN_ENCRYPTION_KEY=KEY, PYTHONPATH=str(ROOT))  # fmt: skip
    env.pop("STATE_URL", None)
    return env


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", "auth", *args],
        cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_authorize_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("http"):
            return line.strip()
    raise AssertionError("no authorize URL printed")


def test_connect_with_a_local_listener_then_status_and_revoke(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(PipedriveSimulator, lifetime_s=3600, rotate=True) as (sim, oauth):
        toml = write_config(tmp_path / "c.toml", "crm", oauth.connection())
        env = cli_env(redis_url, toml, oauth.env())
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "auth", "connect", "crm",
             "--listen", f"127.0.0.1:{port}", "--timeout", "30"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            url = read_authorize_url(proc)
            assert url.startswith(sim.url + "/oauth/authorize?")
            assert f"redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Fcallback" in url
            page = requests.get(url, timeout=10)  # the browser: approve, follow the redirect
            assert page.status_code == 200 and "Connected" in page.text
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        status = json.loads(out)
        assert status["connection"] == "crm" and status["state"] == "valid"
        stored = manager(redis_client, oauth).store.load("crm")
        assert stored is not None and stored.refresh_token == oauth.newest_refresh_token
        assert stored.base_url == sim.url  # Pipedrive's api_domain
        for secret in (*oauth.access, *oauth.issued_refresh, oauth.client_secret):
            assert secret not in out + err

        lines = cli(env, "status").stdout.splitlines()
        assert [json.loads(line)["state"] for line in lines] == ["valid"]
        fields = {"connection", "auth", "state", "expiresAt", "lastRefreshAt", "refreshCount"}
        assert set(json.loads(lines[0])) >= {*fields, "lastError"}
        assert json.loads(cli(env, "revoke", "crm").stdout)["forgotten"] is True
        assert json.loads(cli(env, "status", "crm").stdout)["state"] == "missing"


def test_connect_with_the_redirect_pasted_on_stdin_for_one_extension(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(HubSpotSimulator, lifetime_s=1800) as (_sim, oauth):
        toml = write_config(tmp_path / "c.toml", "crm", oauth.connection())
        env = cli_env(redis_url, toml, oauth.env())
        proc = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "auth", "connect", "crm", "--extension",
             "62242421016", "--redirect-uri", "https://example.com/cb"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            url = read_authorize_url(proc)
            redirect = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
            assert redirect.startswith("https://example.com/cb?code=")
            out, err = proc.communicate(redirect + "\n", timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert json.loads(out)["extension"] == "62242421016"
        tokens = manager(redis_client, oauth)
        assert tokens.store.load("crm", "62242421016") is not None
        assert tokens.store.load("crm") is None  # the connection's own grant is separate


def test_seed_refreshes_at_once_and_a_bad_refresh_token_says_revoked(
    redis_url: str, tmp_path: Path
) -> None:
    with oauth_sim(HubSpotSimulator, lifetime_s=1800) as (_sim, oauth):
        toml = write_config(tmp_path / "c.toml", "crm", oauth.connection())
        _, refresh = oauth.issue()
        env = cli_env(redis_url, toml, {**oauth.env(), "SEED_RT": refresh, "BAD_RT": "rt-nope"})
        done = cli(env, "seed", "crm", "--refresh-token-env", "SEED_RT")
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["state"] == "valid" and status["refreshCount"] == 1
        assert oauth.token_calls == 1 and refresh not in done.stdout + done.stderr
        bad = cli(env, "seed", "crm", "--refresh-token-env", "BAD_RT")
        assert bad.returncode != 0 and "auth connect crm" in bad.stderr
        assert "rt-nope" not in bad.stdout + bad.stderr
        missing = cli(env, "seed", "crm", "--refresh-token-env", "NOT_SET_ANYWHERE")
        assert missing.returncode == 2 and "NOT_SET_ANYWHERE is not set" in missing.stderr
