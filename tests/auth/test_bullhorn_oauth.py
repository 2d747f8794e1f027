"""Bullhorn: refresh grant (single-use refresh tokens), then ``/rest-services/login`` for a
new BhRestToken. A 401 on a timed-out session (the body Bullhorn documents:
``{"errorMessage": "Bad 'BhRestToken' or timed-out.", "errorMessageKey":
"errors.authentication.invalidRestToken", "errorCode": 401}``, tests/contract/fixtures/SOURCES.md)
renews the session with a *fresh* access token, never the expired one."""

from __future__ import annotations

from pathlib import Path

import redis

from contact_lookup.core.request import LookupRequest
from crmsim.bullhorn import BullhornSimulator
from tests.auth.authkit import NUMBERS, manager, oauth_sim, seed, service, setup


def test_timed_out_session_is_renewed_with_the_fresh_access_token(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(BullhornSimulator, lifetime_s=600) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth)
        first_refresh = seed(tokens, oauth, "crm")
        svc = service(config, redis_client, tokens)
        assert svc.lookup("crm", LookupRequest(NUMBERS[0]))["successful"]
        assert sim.logins == 1
        # The store refreshes (as it does before expiry); then the vendor ends both the old
        # access token and the REST session.
        tokens.renew(config.connection("crm"), tokens.store.load("crm").access_token)
        oauth.access.pop(next(iter(oauth.access)))  # the first access token dies
        sim.expire_sessions()
        result = svc.lookup("crm", LookupRequest(NUMBERS[1]))
        assert result["successful"], result
        assert sim.logins == 2  # the new session was opened with the fresh token
        record = tokens.store.load("crm")
        assert record.refresh_token != first_refresh  # Bullhorn rotates on every refresh
        assert record.refresh_token == oauth.newest_refresh_token


def test_login_refused_for_an_expired_access_token_refreshes_once(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(BullhornSimulator, lifetime_s=600) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth)
        seed(tokens, oauth, "crm")
        svc = service(config, redis_client, tokens)
        assert svc.lookup("crm", LookupRequest(NUMBERS[0]))["successful"]
        # The store still believes its access token valid; Bullhorn has expired it and the
        # session: the re-login is refused, the core refreshes once and logs in again.
        oauth.expire_access_tokens()
        sim.expire_sessions()
        result = svc.lookup("crm", LookupRequest(NUMBERS[1]))
        assert result["successful"], result
        assert oauth.refreshes == 1 and oauth.token_calls == 1
        assert sim.logins == 2
