"""A ``rest`` connection with ``auth = "oauth2"``, end to end: the Capsule template
(examples/rest/capsule.toml) with its token from the token store, against the Capsule
simulator made an OAuth server (crmsim/oauth.py) whose access tokens live ``LIFETIME_S``.

Capsule documents OAuth 2 bearer tokens, and 401 for an invalid or expired one
(developer.capsulecrm.com/v2/overview/authentication). The simulator lets a request through
only with an issued, unexpired access token, so every successful lookup below proves that
``{token}`` in the template's ``Authorization`` header was the current access token.

- a real worker process answers lookups while tokens expire: the core refreshes them before
  they expire (proactive), and after the CRM rejects one it believed valid, once (reactive);
- ``contact-lookup connectors try`` prints the request with the header masked;
- no access token, refresh token or client secret is in any result, worker log line, Redis
  value or ``try`` output.

Takes about 10 s (a worker start, and two token lifetimes for the proactive refresh).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from contact_lookup.auth.manager import TokenManager
from contact_lookup.core.request import LookupRequest
from contact_lookup.model.purpose import PURPOSES
from contact_lookup.testing.contract import SEED
from crmsim.base import SimRequest, SimResponse
from crmsim.capsule import SEARCH_PATH, CapsuleSimulator
from crmsim.oauth import OAuthServer, enable
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.auth.authkit import KEY, manager, seed
from tests.auth.test_refresh_workers import redis_values
from tests.conftest import EXAMPLES, flushed_db, settings_for
from tests.processes import WorkerProcess, base_env

LIFETIME_S = 3.0  # refreshed when half of it is left (TokenManager's margin)
ADA = "+14155550100"  # stored only as "(415) 555-0100"
SHARED = "+14155550177"  # Alan Turing and Barbara Liskov
CONTRACT_DB = 14


def oauth_template(sim: CapsuleSimulator, oauth: OAuthServer) -> str:
    """examples/rest/capsule.toml as an operator would change it for OAuth: token_env out,
    auth, client credentials and the token endpoint in."""
    text = (EXAMPLES / "rest" / "capsule.toml").read_text()
    text = re.sub(r"(?m)^base_url = .*$", f'base_url = "{sim.url}"', text)
    auth = "\n".join(
        [
            'auth = "oauth2"',
            f'client_id_env = "{oauth.client_id_env}"',
            f'client_secret_env = "{oauth.client_secret_env}"',
            f'token_url = "{sim.url}/oauth/token"',
        ]
    )
    text, count = re.subn(r"(?m)^token_env = .*$", auth, text)
    assert count == 1
    return text


class RecordingCapsule(CapsuleSimulator):
    """Notes each search's bearer token as presented, and whether it was valid then."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.presented: list[tuple[str, bool]] = []

    def _dispatch(self, req: SimRequest) -> tuple[SimResponse | None, str | None]:
        if req.path == SEARCH_PATH and self.oauth is not None:
            token = (req.header("Authorization") or "").removeprefix("Bearer ")
            with self.oauth.lock:
                valid = self.oauth.access.get(token, 0.0) > time.time()
            with self.lock:
                self.presented.append((token, valid))
        return super()._dispatch(req)


@pytest.fixture
def capsule() -> Iterator[tuple[RecordingCapsule, OAuthServer]]:
    with RecordingCapsule(SEED) as sim:
        yield sim, enable(sim, lifetime_s=LIFETIME_S, rotate=True)


@pytest.fixture
def db_url() -> Iterator[str]:
    with flushed_db(CONTRACT_DB) as url:
        yield url


def connected(
    sim: CapsuleSimulator, oauth: OAuthServer, db_url: str, tmp_path: Path, *, expired: bool = False
) -> tuple[Path, redis.Redis, TokenManager, dict[str, str]]:
    """The connections file, a grant in the token store (``expired``: its access token
    already is), and the environment of a worker or command using them."""
    toml = tmp_path / "cl.toml"
    toml.write_text(oauth_template(sim, oauth))
    client = redis.Redis.from_url(db_url)
    tokens = manager(client, oauth)
    seed(tokens, oauth, "capsule", expired=expired)
    env = base_env(
        **oauth.env(), REDIS_URL=db_url, CONTACT_LOOKUP_CONFIG=str(toml), TOKEN_ENCRYPTION_KEY=KEY
    )
    env.pop("STATE_URL", None)
    return toml, client, tokens, env


def secrets_of(oauth: OAuthServer) -> list[str]:
    return [*oauth.access, *oauth.issued_refresh, oauth.client_secret, KEY]


def test_oauth2_rest_connection_through_a_worker(
    capsule: tuple[RecordingCapsule, OAuthServer], db_url: str, tmp_path: Path
) -> None:
    sim, oauth = capsule
    toml, client, tokens, env = connected(sim, oauth, db_url, tmp_path)
    app = create_app(settings_for(db_url, toml))
    results: list[dict[str, Any]] = []

    def lookup(number: str) -> dict[str, Any]:
        request = LookupRequest(number, force_refresh=True, debug=True)
        result: dict[str, Any] = enqueue(app, "capsule", request).get(timeout=30)
        results.append(result)
        return result

    worker = WorkerProcess(env, tmp_path, "rest-oauth", queues=",".join(PURPOSES), concurrency=2)
    with worker:
        first = lookup(ADA)
        assert first["successful"] is True, first
        assert [c["name"] for c in first["matchedContactInfo"]] == ["Ada Lovelace"]

        # Proactive: lookups while tokens age; the core refreshes before each expires, so
        # the CRM never sees an expired token and no lookup fails.
        deadline = time.monotonic() + 4 * LIFETIME_S
        while oauth.refreshes < 2 and time.monotonic() < deadline:
            assert lookup(SHARED)["successful"] is True, results[-1]
        assert oauth.refreshes >= 2, "the token store never refreshed the access token"
        # {token} was the current access token in every request: never an expired one, and
        # the new one after each refresh (the seeded one may age out while the worker starts).
        assert all(valid for _, valid in sim.presented), "the CRM saw an expired token"
        assert len({token for token, _ in sim.presented}) >= oauth.refreshes >= 2

        # Reactive: the CRM invalidates the token the store believes valid; the lookup meets
        # 401, the core refreshes once and the same lookup succeeds with the new token. The
        # stored token must be well outside the refresh margin first (half its lifetime), or
        # the core would refresh it before sending and never meet the 401.
        def left_s() -> float:
            record = tokens.store.load("capsule")
            assert record is not None
            return record.expires_at - time.time()

        deadline = time.monotonic() + 4 * LIFETIME_S
        while left_s() < LIFETIME_S / 2 + 1.0 and time.monotonic() < deadline:
            assert lookup(SHARED)["successful"] is True, results[-1]
        before = len(sim.presented)
        oauth.expire_access_tokens()
        refreshes, searches = oauth.refreshes, sim.by_path[SEARCH_PATH]
        again = lookup(SHARED)
        assert again["successful"] is True, again
        assert sorted(c["name"] for c in again["matchedContactInfo"]) == [
            "Alan Turing",
            "Barbara Liskov",
        ]
        assert oauth.refreshes == refreshes + 1  # one refresh, not one per request or thread
        assert sim.by_path[SEARCH_PATH] > searches + 1  # rejected requests, then sent again
        rejected = [token for token, valid in sim.presented[before:] if not valid]
        retried = [token for token, valid in sim.presented[before:] if valid]
        assert rejected and retried and len(set(retried)) == 1  # one new token for the retry
        assert set(rejected).isdisjoint(retried)
    assert tokens.store.load("capsule").refresh_token == oauth.newest_refresh_token

    # Nothing secret in any result (debug traces included), worker log line or Redis value.
    assert all(r["debugTrace"] for r in results)
    haystacks = [
        str(results).encode(),
        worker.logs().encode(),
        *redis_values(client),
    ]
    for secret in secrets_of(oauth):
        assert not any(secret.encode() in h for h in haystacks), "a secret leaked"
    client.close()


def test_connectors_try_an_oauth2_rest_connection_masks_the_access_token(
    capsule: tuple[RecordingCapsule, OAuthServer], db_url: str, tmp_path: Path
) -> None:
    sim, oauth = capsule
    _toml, client, tokens, env = connected(sim, oauth, db_url, tmp_path, expired=True)
    done = subprocess.run(
        [sys.executable, "-m", "producers.cli", "connectors", "try", "capsule", ADA],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert oauth.refreshes == 1  # the expired token was refreshed before the request
    assert tokens.store.load("capsule").refresh_token == oauth.newest_refresh_token
    assert '"Authorization": "***"' in done.stdout  # masked (and redacted as credential-shaped)
    assert '"firstName": "Ada"' in done.stdout
    for secret in secrets_of(oauth):
        assert secret not in done.stdout + done.stderr
    client.close()


def test_the_operators_path_auth_seed_then_lookup_local(
    capsule: tuple[RecordingCapsule, OAuthServer], db_url: str, tmp_path: Path
) -> None:
    """docs/connectors.md's worked example as an operator runs it: a refresh token from
    Capsule's OAuth flow stored with ``auth seed`` (which refreshes at once to prove it),
    then a lookup through the same store."""
    sim, oauth = capsule
    toml = tmp_path / "cl.toml"
    toml.write_text(oauth_template(sim, oauth))
    _access, refresh = oauth.issue()
    env = base_env(
        **oauth.env(),
        REDIS_URL=db_url,
        CONTACT_LOOKUP_CONFIG=str(toml),
        TOKEN_ENCRYPTION_KEY=KEY,
        CAPSULE_REFRESH=refresh,
    )
    env.pop("STATE_URL", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "producers.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    seeded = cli("auth", "seed", "capsule", "--refresh-token-env", "CAPSULE_REFRESH")
    assert seeded.returncode == 0, seeded.stderr
    assert oauth.refreshes == 1
    found = cli("lookup", ADA, "--connection", "capsule", "--local")
    assert found.returncode == 0, found.stderr
    assert '"Ada Lovelace"' in found.stdout
    assert sim.presented and all(valid for _, valid in sim.presented)
    for secret in secrets_of(oauth):
        assert secret not in seeded.stdout + seeded.stderr + found.stdout + found.stderr


def test_auth_connect_on_capsule_uses_the_configured_authorize_url(
    capsule: tuple[RecordingCapsule, OAuthServer], db_url: str, tmp_path: Path
) -> None:
    """``authorize_url``: Capsule's authorization page is ``/oauth/authorise``
    (developer.capsulecrm.com/v2/overview/authentication), not the ``/oauth/authorize``
    beside ``token_url`` that a ``rest`` connection otherwise gets. With the key set, the
    authorization-code flow of ``auth connect --listen`` completes and a lookup follows."""
    from tests.auth.test_auth_cli import free_port, read_authorize_url

    sim, oauth = capsule
    toml = tmp_path / "cl.toml"
    text = oauth_template(sim, oauth)
    text = text.replace(
        'auth = "oauth2"', f'auth = "oauth2"\nauthorize_url = "{sim.url}/oauth/authorise"'
    )
    toml.write_text(text)
    env = base_env(**oauth.env(), REDIS_URL=db_url, CONTACT_LOOKUP_CONFIG=str(toml),
                   TOKEN_ENCRYPTION_KEY=KEY)  # fmt: skip
    env.pop("STATE_URL", None)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "producers.cli", "auth", "connect", "capsule",
         "--listen", f"127.0.0.1:{port}", "--timeout", "30"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = read_authorize_url(proc)
        assert url.startswith(f"{sim.url}/oauth/authorise?"), url
        page = requests.get(url, timeout=10)
        assert page.status_code == 200, page.text
        assert page.url.startswith(f"http://127.0.0.1:{port}/callback?code=")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    command = [sys.executable, "-m", "producers.cli", "lookup", ADA, "--connection", "capsule"]
    found = subprocess.run(
        [*command, "--local"], capture_output=True, text=True, env=env, timeout=60
    )
    assert found.returncode == 0, found.stderr
    assert '"Ada Lovelace"' in found.stdout
    for secret in secrets_of(oauth):
        assert secret not in out + err + found.stdout + found.stderr
