"""Revocation, then recovery through ``contact-lookup auth connect`` while a real worker
process keeps running: the vendor revokes the grant, lookups fail with ``AuthRevoked`` telling
the operator to run the connect command; the operator runs it (the authorization-code flow
with ``--listen``: the printed authorize URL is opened on the simulator's authorize page, which
redirects the browser to the local listener); the next lookup on the same worker process
succeeds. No restart: the worker reads the token store on every lookup."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis
import requests

from contact_lookup.core.request import LookupRequest
from contact_lookup.model.purpose import PURPOSES
from crmsim.clio import ClioSimulator
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.auth.authkit import KEY, NUMBERS, manager, oauth_sim, seed, write_config
from tests.auth.test_auth_cli import cli_env, free_port, read_authorize_url
from tests.conftest import ROOT, settings_for
from tests.processes import WorkerProcess, base_env


def test_revoked_grant_recovers_after_auth_connect_without_a_worker_restart(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(ClioSimulator, lifetime_s=600, rotate=True) as (_sim, oauth):
        toml = write_config(tmp_path / "connections.toml", "crm", oauth.connection())
        tokens = manager(redis_client, oauth)
        seed(tokens, oauth, "crm")
        env = base_env(**oauth.env(), REDIS_URL=redis_url, CONTACT_LOOKUP_CONFIG=str(toml),
                       TOKEN_ENCRYPTION_KEY=KEY)  # fmt: skip
        env.pop("STATE_URL", None)
        app = create_app(settings_for(redis_url, toml))
        worker = WorkerProcess(env, tmp_path, "recover", queues=",".join(PURPOSES), concurrency=2)

        def lookup(i: int) -> dict:
            request = LookupRequest(NUMBERS[i], force_refresh=True)
            result: dict = enqueue(app, "crm", request).get(timeout=30)
            return result

        try:
            worker.start()
            pid = worker.proc.pid
            assert lookup(0)["successful"]

            oauth.revoke()  # the user disconnected the app in the CRM
            revoked = lookup(1)
            assert not revoked["successful"], revoked
            assert revoked["extraDataTracking"]["errorType"] == "AuthRevoked"
            assert "contact-lookup auth connect crm" in revoked["returnMessage"]["message"]
            calls = oauth.token_calls
            assert lookup(2)["extraDataTracking"]["errorType"] == "AuthRevoked"
            assert oauth.token_calls == calls  # fails fast: no second probe within the minute

            # The operator reconnects: auth connect with a local listener.
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "producers.cli", "auth", "connect", "crm",
                 "--listen", f"127.0.0.1:{port}", "--timeout", "30"],
                cwd=ROOT, env=cli_env(redis_url, toml, oauth.env()),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                url = read_authorize_url(proc)
                # The browser: the simulator's authorize page approves for this user and
                # redirects to http://127.0.0.1:PORT/callback?code=...&state=...
                page = requests.get(url + "&user=ada-lovelace", timeout=10)
                assert page.status_code == 200 and "Connected" in page.text
                assert page.url.startswith(f"http://127.0.0.1:{port}/callback?code=")
                out, err = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert proc.returncode == 0, err
            status = json.loads(out)
            assert status["state"] == "valid"
            assert status["connectedAs"]["email"] == "ada-lovelace@example.com"
            assert "Connected crm as Ada Lovelace <ada-lovelace@example.com>." in err

            # The same worker process, not restarted, succeeds again.
            recovered = lookup(3)
            assert recovered["successful"], recovered
            assert recovered["matchedContactInfo"][0]["name"] == "Person 3"
            assert worker.proc.pid == pid and worker.alive
        finally:
            worker.stop()
        for secret in (*oauth.access, *oauth.issued_refresh, oauth.client_secret, KEY):
            assert secret not in out + err + worker.logs()
