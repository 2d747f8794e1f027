"""Two real worker processes (threads pool) doing lookups while the CRM's access token
expires every 3 s: no lookup fails, the token endpoint sees about one refresh per token
lifetime (not one per thread or process), and no token, client secret or encryption key
appears in any Redis value (results with debug traces, task messages, token store) or
worker log line. (Flower's pages are not scanned here: the faults suite's canary covers
Flower for static tokens.)

The issue asks for a 60 s run; this one lasts ``RUN_S`` = 20 s (over six token lifetimes)
to keep ``make test`` fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from contact_lookup.core.request import LookupRequest
from contact_lookup.model.purpose import PURPOSES
from crmsim.clio import ClioSimulator
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.auth.authkit import KEY, NUMBERS, manager, oauth_sim, seed, write_config
from tests.conftest import settings_for
from tests.processes import WorkerProcess, base_env

RUN_S = 20.0
LIFETIME_S = 3.0


def redis_values(client: redis.Redis) -> list[bytes]:
    """Every value in the database, whatever its type."""
    out: list[bytes] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        out.append(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out.extend(v for kv in client.hgetall(key).items() for v in kv)
        elif kind == b"list":
            out.extend(client.lrange(key, 0, -1))
        elif kind == b"set":
            out.extend(client.smembers(key))
        elif kind == b"zset":
            out.extend(m for m, _ in client.zrange(key, 0, -1, withscores=True))
    return out


def test_three_second_tokens_on_two_worker_processes(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(ClioSimulator, lifetime_s=LIFETIME_S, rotate=True) as (_sim, oauth):
        table = {**oauth.connection(), "rate_limit": "1000/1"}  # the limiter is not under test
        toml = write_config(tmp_path / "connections.toml", "crm", table)
        tokens = manager(redis_client, oauth)
        seed(tokens, oauth, "crm")
        env = base_env(**oauth.env(), REDIS_URL=redis_url, CONTACT_LOOKUP_CONFIG=str(toml),
                       TOKEN_ENCRYPTION_KEY=KEY)  # fmt: skip
        env.pop("STATE_URL", None)
        app = create_app(settings_for(redis_url, toml))
        queues = ",".join(PURPOSES)
        workers = [WorkerProcess(env, tmp_path, f"auth{i}", queues=queues, concurrency=4)
                   for i in (1, 2)]  # fmt: skip
        results: list[dict] = []
        try:
            for w in workers:
                w.start()
            calls_before = oauth.token_calls
            started = time.monotonic()
            i = 0
            while time.monotonic() - started < RUN_S:
                batch = [  # one debug lookup a batch: its trace goes into the result too
                    enqueue(
                        app,
                        "crm",
                        LookupRequest(NUMBERS[(i + k) % 100], force_refresh=True, debug=k == 0),
                    )
                    for k in range(8)
                ]
                i += 8
                results.extend(p.get(timeout=30) for p in batch)
            elapsed = time.monotonic() - started
            refreshes = oauth.token_calls - calls_before
        finally:
            for w in workers:
                w.stop()
        failed = [r for r in results if not r["successful"]]
        print(f"\n{len(results)} lookups on 2 workers in {elapsed:.1f} s with {LIFETIME_S:g} s "
              f"tokens: {len(failed)} failed, {refreshes} token-endpoint calls")  # fmt: skip
        assert not failed, failed[:3]
        assert len(results) >= 100
        # A 3 s token is refreshed when half its life is left: about every 1.5 s, by one
        # worker thread for all eight.
        assert refreshes <= elapsed / (LIFETIME_S / 2) + 3, refreshes
        assert refreshes >= elapsed / LIFETIME_S - 1, refreshes
        assert tokens.store.load("crm").refresh_token == oauth.newest_refresh_token

        # The canary: nothing secret in clear anywhere it could leak to.
        secrets = [*oauth.access, *oauth.issued_refresh, oauth.client_secret, KEY]
        haystacks = [*redis_values(redis_client), *(w.logs().encode() for w in workers)]
        assert len(haystacks) > 50
        traced = [r for r in results if r.get("debugTrace")]
        assert len(traced) >= len(results) // 8 - 1 and all(
            "/api/v4/contacts.json" in r["debugTrace"][0]["url"] for r in traced
        )
        for secret in secrets:
            assert not any(secret.encode() in h for h in haystacks), "a secret leaked"
