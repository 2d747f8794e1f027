"""Refresh in the core, across threads and processes: real Redis, simulators over HTTP.

- 50 concurrent lookups at the moment of expiry make exactly one token-endpoint call.
- Rotation: after 20 refreshes the stored refresh token is the vendor's newest, and the only
  one the vendor still accepts.
- A 401 for a token we believed valid renews it once; the lookup succeeds.
- Revocation: failed results that say what to do, at most one token call a minute, and
  recovery after ``auth seed`` in the same process (no restart).
- A token endpoint that is down or rate limited is transient, never "revoked".
- A process SIGKILLed while it holds the refresh lock delays the others by at most the lock
  timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from contact_lookup.auth import flows
from contact_lookup.auth.endpoint import TokenSet
from contact_lookup.core import keys
from contact_lookup.core.request import LookupRequest
from contact_lookup.model.config import load_config
from contact_lookup.model.errors import CRMUnavailable, RateLimited
from crmsim.clio import ClioSimulator
from crmsim.hubspot import HubSpotSimulator
from crmsim.salesforce import SalesforceSimulator
from tests.auth.authkit import (
    KEY,
    NUMBERS,
    manager,
    oauth_sim,
    seed,
    service,
    setup,
    write_config,
)
from tests.conftest import ROOT


def lookup(svc, number: str) -> dict:  # type: ignore[no-untyped-def]
    return svc.lookup("crm", LookupRequest(number, force_refresh=True))


def test_fifty_concurrent_lookups_at_expiry_make_one_token_call(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(ClioSimulator, lifetime_s=60) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth)
        seed(tokens, oauth, "crm", expired=True)
        svc = service(config, redis_client, tokens)
        barrier = threading.Barrier(50)
        results: list[dict] = []

        def one(i: int) -> None:
            barrier.wait()
            results.append(lookup(svc, NUMBERS[i]))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 50
        assert all(r["successful"] for r in results), [r for r in results if not r["successful"]]
        assert sorted(r["matchedContactInfo"][0]["name"] for r in results) == sorted(
            f"Person {i}" for i in range(50)
        )
        assert oauth.token_calls == 1
        assert tokens.store.load("crm").refresh_count == 1


def test_rotation_keeps_the_vendors_newest_refresh_token(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(HubSpotSimulator, lifetime_s=600, rotate=True) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth)
        first = seed(tokens, oauth, "crm")
        svc = service(config, redis_client, tokens)
        conn = config.connection("crm")
        for _ in range(20):
            current = tokens.store.load("crm")
            tokens.renew(conn, current.access_token)  # as after a 401: forces a refresh
        record = tokens.store.load("crm")
        assert oauth.refreshes == 20 and record.refresh_count == 20
        assert record.refresh_token == oauth.newest_refresh_token != first
        assert list(oauth.refresh) == [record.refresh_token]  # the only one still accepted
        # Redis holds it encrypted: no token in clear in any stored value.
        raw = b"".join(redis_client.hgetall(keys.auth_tokens("crm")).values())
        assert record.refresh_token.encode() not in raw
        assert record.access_token.encode() not in raw
        assert lookup(svc, NUMBERS[0])["successful"]


def test_a_401_on_a_token_believed_valid_renews_it_once(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Salesforce names no expiry: the token dies at the org's session timeout, and the 401
    # INVALID_SESSION_ID is the signal. The refresh also honours instance_url.
    with oauth_sim(SalesforceSimulator, lifetime_s=600) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth)
        seed(tokens, oauth, "crm")
        oauth.expire_access_tokens()  # the vendor ended the session early
        svc = service(config, redis_client, tokens)
        result = lookup(svc, NUMBERS[1])
        assert result["successful"], result
        assert result["matchedContactInfo"][0]["name"] == "Person 1"
        assert oauth.token_calls == 1
        assert tokens.store.load("crm").base_url == sim.url
        assert lookup(svc, NUMBERS[2])["successful"] and oauth.token_calls == 1


def test_revoked_grant_fails_fast_then_recovers_after_seed(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(ClioSimulator, lifetime_s=60) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth)
        seed(tokens, oauth, "crm", expired=True)
        oauth.revoke()
        svc = service(config, redis_client, tokens)
        results = [lookup(svc, n) for n in NUMBERS[:10]]
        for r in results:
            assert not r["successful"]
            assert r["extraDataTracking"]["errorType"] == "AuthRevoked"
            assert "contact-lookup auth connect crm" in r["returnMessage"]["message"]
        assert oauth.token_calls == 1  # one probe a minute at most, not one per lookup
        status = flows.status_of(tokens, config.connection("crm"))
        assert status["state"] == "revoked" and "invalid_grant" in status["lastError"]
        # The operator seeds a new grant: the same service recovers, no restart.
        _, refresh = oauth.issue()
        flows.seed(tokens, config.connection("crm"), refresh)
        assert lookup(svc, NUMBERS[0])["successful"]
        assert flows.status_of(tokens, config.connection("crm"))["state"] == "valid"


def test_a_revoked_grant_is_probed_again_only_after_the_probe_interval(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(ClioSimulator, lifetime_s=60) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth, probe_every_s=1)  # 60 s in production
        seed(tokens, oauth, "crm", expired=True)
        oauth.revoke()
        svc = service(config, redis_client, tokens)
        assert not lookup(svc, NUMBERS[0])["successful"] and oauth.token_calls == 1
        deadline = time.monotonic() + 5
        while oauth.token_calls == 1:  # fail fast until the interval has passed, then one probe
            result = lookup(svc, NUMBERS[0])
            assert result["extraDataTracking"]["errorType"] == "AuthRevoked"
            assert time.monotonic() < deadline
        assert oauth.token_calls == 2
        assert redis_client.ttl(keys.auth_probe("crm")) >= 0


def test_token_endpoint_down_or_limited_is_transient_never_revoked(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(ClioSimulator, lifetime_s=60) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth)
        seed(tokens, oauth, "crm", expired=True)
        svc = service(config, redis_client, tokens)
        oauth.fail_next(503)
        with pytest.raises(CRMUnavailable):
            lookup(svc, NUMBERS[0])
        oauth.fail_next(429)
        with pytest.raises(RateLimited):
            lookup(svc, NUMBERS[0])
        status = flows.status_of(tokens, config.connection("crm"))
        assert status["state"] == "expiring" and "RateLimited" in status["lastError"]
        assert lookup(svc, NUMBERS[0])["successful"]  # the retry succeeds
        assert oauth.token_calls == 3


def test_a_proactive_refresh_that_fails_keeps_using_the_unexpired_token(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(ClioSimulator, lifetime_s=60) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth, margin_s=120)  # 60 s token: refresh due at 30 s
        seed(tokens, oauth, "crm")
        record = tokens.store.load("crm")
        due = TokenSet(record.access_token, record.refresh_token, time.time() + 20, 60)
        tokens.store.save("crm", due)
        oauth.fail_next(503)
        assert lookup(service(config, redis_client, tokens), NUMBERS[0])["successful"]
        assert oauth.token_calls == 1


LOCK_HOLDER = """
import sys, redis
from contact_lookup.auth.crypto import TokenCipher
from contact_lookup.auth.manager import TokenManager
from contact_lookup.auth.store import TokenStore
from contact_lookup.model.config import load_config
client = redis.Redis.from_url(sys.argv[1])
config = load_config(sys.argv[2])
env = {"CRMSIM_CLIO_CLIENT_ID": sys.argv[3], "CRMSIM_CLIO_CLIENT_SECRET": sys.argv[4]}
tokens = TokenManager(TokenStore(client, TokenCipher(sys.argv[5])), env=env,
                      lock_timeout_s=3, timeout_s=30)
print("refreshing", flush=True)
tokens.get(config.connection("crm"))
"""


def test_a_killed_lock_holder_blocks_others_only_until_the_lock_times_out(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(ClioSimulator, lifetime_s=60, hang_s=0) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth, lock_timeout_s=3)
        seed(tokens, oauth, "crm", expired=True)
        oauth.hang_s = 30  # the holder's token call never returns
        script = LOCK_HOLDER
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                redis_url,
                str(tmp_path / "connections.toml"),
                oauth.client_id,
                oauth.client_secret,
                KEY,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 20
            while not redis_client.exists(keys.auth_lock("crm")):
                assert holder.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            while oauth.token_calls < 1:  # the holder is inside its token call
                assert time.monotonic() < deadline
                time.sleep(0.02)
            holder.send_signal(signal.SIGKILL)
            holder.wait(5)
            oauth.hang_s = 0
            started = time.monotonic()
            result = lookup(service(config, redis_client, tokens), NUMBERS[0])
            waited = time.monotonic() - started
        finally:
            if holder.poll() is None:
                holder.kill()
            holder.wait(5)
        assert result["successful"], result
        assert waited < 3 + 1.0  # at most the lock timeout, and not the holder's 30 s
        assert oauth.token_calls == 2


def test_jwt_bearer_mints_tokens_without_a_refresh_token(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "server.key").write_bytes(pem)
    with oauth_sim(SalesforceSimulator, lifetime_s=600) as (sim, oauth):
        oauth.jwt_public_key = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        table = {
            "crm": "salesforce",
            "base_url": sim.url,
            "auth": "jwt-bearer",
            "client_id_env": oauth.client_id_env,
            "private_key_file": "server.key",
            "username": "ops@example.com",
            "token_url": sim.url + "/services/oauth2/token",
        }
        config = load_config(write_config(tmp_path / "c.toml", "crm", table))
        tokens = manager(redis_client, oauth)
        svc = service(config, redis_client, tokens)
        assert lookup(svc, NUMBERS[0])["successful"]
        assert oauth.token_calls == 1 and tokens.store.load("crm").refresh_token is None
        oauth.expire_access_tokens()  # 401: a new assertion, not a refresh token
        assert lookup(svc, NUMBERS[1])["successful"] and oauth.token_calls == 2


def test_an_extension_uses_its_own_grant_and_falls_back_to_the_connections(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(ClioSimulator, lifetime_s=600) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth)
        access, refresh = oauth.issue(user="alice")
        tokens.store.save("crm", TokenSet(access, refresh, time.time() + 600, 600), user="101")
        svc = service(config, redis_client, tokens)
        mine = svc.lookup("crm", LookupRequest(NUMBERS[0], user="101"))
        assert mine["successful"], mine
        nobody = svc.lookup("crm", LookupRequest(NUMBERS[0], user="202", force_refresh=True))
        assert nobody["extraDataTracking"]["errorType"] == "AuthRevoked"  # no grant at all
        seed(tokens, oauth, "crm")
        fallback = svc.lookup("crm", LookupRequest(NUMBERS[0], user="202", force_refresh=True))
        assert fallback["successful"]
        # A 401 on the extension's token renews the extension's grant, not the connection's.
        own_before = tokens.store.load("crm")
        oauth.access.pop(access)
        assert svc.lookup("crm", LookupRequest(NUMBERS[1], user="101"))["successful"]
        assert tokens.store.load("crm", "101").refresh_count == 1
        assert tokens.store.load("crm") == own_before
        assert [s["extension"] for s in flows.status(tokens, config) if "extension" in s] == ["101"]
