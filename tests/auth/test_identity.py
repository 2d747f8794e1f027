"""``auth connect`` / ``auth seed`` name who is connected, read from each vendor's documented
identity endpoint after the tokens are stored (sources in contact_lookup/auth/identity.py):
Clio ``/api/v4/users/who_am_i``, Pipedrive ``/api/v1/users/me`` on the ``api_domain``,
HubSpot ``/oauth/v1/access-tokens/{token}``, Salesforce ``/services/oauth2/userinfo``,
Bullhorn ``{restUrl}settings/userId,corporationName`` after ``/rest-services/login``.
Never a token; an identity endpoint that fails keeps the stored tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
import requests

from contact_lookup.auth import flows
from contact_lookup.model.config import load_config
from crmsim.base import Simulator
from crmsim.bullhorn import BullhornSimulator
from crmsim.clio import ClioSimulator
from crmsim.hubspot import HubSpotSimulator
from crmsim.pipedrive import PipedriveSimulator
from crmsim.salesforce import SalesforceSimulator
from tests.auth.authkit import manager, oauth_sim, write_config
from tests.auth.test_auth_cli import cli, cli_env

EXPECTED: dict[type[Simulator], dict[str, object]] = {
    ClioSimulator: {"crm": "clio", "name": "Ada Lovelace", "email": "ada-lovelace@example.com",
                    "id": 344001},
    PipedriveSimulator: {"crm": "pipedrive", "name": "Ada Lovelace",
                         "email": "ada-lovelace@example.com", "id": 777,
                         "company_name": "Sim Company"},
    HubSpotSimulator: {"crm": "hubspot", "user": "ada-lovelace@example.com", "user_id": 123,
                       "hub_id": 62515, "hub_domain": "sim.hubspot.com"},
    SalesforceSimulator: {"crm": "salesforce", "preferred_username": "ada-lovelace@example.com",
                          "name": "Ada Lovelace", "email": "ada-lovelace@example.com",
                          "user_id": "005000000000001", "organization_id": "00D000000000001"},
    BullhornSimulator: {"crm": "bullhorn", "userId": 1234, "corporationName": "Sim Staffing"},
}  # fmt: skip


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_seed_names_the_connected_user_per_vendor(
    cls: type[Simulator], redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(cls, lifetime_s=600) as (_sim, oauth):
        config = load_config(write_config(tmp_path / "c.toml", "crm", oauth.connection()))
        tokens = manager(redis_client, oauth)
        _, refresh = oauth.issue(user="ada-lovelace")
        out = flows.seed(tokens, config.connection("crm"), refresh)
        assert out["state"] == "valid" and out["connectedAs"] == EXPECTED[cls]
        assert oauth.identity_calls >= 1
        text = json.dumps(out)
        for secret in (*oauth.access, *oauth.issued_refresh, oauth.client_secret):
            assert secret not in text


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_connect_names_the_connected_user_per_vendor(
    cls: type[Simulator], redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(cls, lifetime_s=600) as (_sim, oauth):
        config = load_config(write_config(tmp_path / "c.toml", "crm", oauth.connection()))
        tokens = manager(redis_client, oauth)

        def browser(url: str, _redirect: str) -> str:  # the user approves on the vendor's page
            answer = requests.get(url + "&user=ada-lovelace", allow_redirects=False, timeout=10)
            return str(answer.headers["Location"])

        out = flows.connect(tokens, config.connection("crm"), redirect_uri=None,
                            get_redirect=browser, env=oauth.env())  # fmt: skip
        assert out["state"] == "valid" and out["connectedAs"] == EXPECTED[cls]
        stored = tokens.store.load("crm")
        assert stored is not None and stored.refresh_token == oauth.newest_refresh_token
        text = json.dumps(out)
        for secret in (*oauth.access, *oauth.issued_refresh, oauth.client_secret):
            assert secret not in text


def test_cli_prints_who_is_connected_and_a_failing_identity_keeps_the_tokens(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with oauth_sim(PipedriveSimulator, lifetime_s=3600, rotate=True) as (_sim, oauth):
        toml = write_config(tmp_path / "c.toml", "crm", oauth.connection())
        _, first = oauth.issue(user="grace-hopper")
        env = cli_env(redis_url, toml, {**oauth.env(), "SEED_RT": first})
        done = cli(env, "seed", "crm", "--refresh-token-env", "SEED_RT")
        assert done.returncode == 0, done.stderr
        assert "Connected crm as Grace Hopper <grace-hopper@example.com>." in done.stderr
        assert json.loads(done.stdout)["connectedAs"]["email"] == "grace-hopper@example.com"

        _, second = oauth.issue(user="grace-hopper")
        oauth.identity_failures = 1  # the identity endpoint answers 500 once
        env["SEED_RT"] = second
        failed = cli(env, "seed", "crm", "--refresh-token-env", "SEED_RT")
        assert failed.returncode == 0, failed.stderr
        status = json.loads(failed.stdout)
        assert status["state"] == "valid" and status["connectedAs"] is None
        assert "could not be read (HTTP 500)" in status["identityError"]
        assert "who is connected could not be read" in failed.stderr
        stored = manager(redis_client, oauth).store.load("crm")
        assert stored is not None and stored.refresh_token == oauth.newest_refresh_token
        for secret in (*oauth.access, *oauth.issued_refresh, oauth.client_secret):
            assert secret not in done.stdout + done.stderr + failed.stdout + failed.stderr
