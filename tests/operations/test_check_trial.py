"""``contact-lookup check`` on what a new-user trial found it let through (real Redis, the Clio
simulator over HTTP): an OAuth connection's client id and secret, the webhook's
``RC_VERIFICATION_TOKEN``, a Redis database index the server does not have or that is not a
number, and the credentials probe paid from the connection's shared rate budget.

Items are the ones ``worker.checks`` yields for a worker's start too (one implementation).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from contact_lookup.compose import Runtime
from contact_lookup.core import keys
from contact_lookup.core.ratelimit import RateLimiter, limit_for
from contact_lookup.settings import Settings
from crmsim.clio import ClioSimulator
from tests.conftest import EXAMPLES
from tests.operations.test_check import check, env, write
from worker.checks import lines

TOKEN = "clio-trial-token-8e2b"
CANARY = "cnry-secret-Wq47"  # a value that must never be printed

OAUTH = """
[connections.oauthy]
crm = "clio"
base_url = "{url}"
rc_account = "3"
auth = "oauth2"
client_id_env = "TRIAL_CLIENT_ID"
client_secret_env = "TRIAL_CLIENT_SECRET"
"""


@pytest.fixture
def clio() -> Iterator[ClioSimulator]:
    with ClioSimulator(json.loads((EXAMPLES / "contacts.json").read_text()), token=TOKEN) as sim:
        yield sim


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        (None, "TRIAL_CLIENT_SECRET is not set"),
        ("", "TRIAL_CLIENT_SECRET is not set"),
        ("change-me", "TRIAL_CLIENT_SECRET still holds a placeholder"),
        (f"\u201c{CANARY}\u201d", "TRIAL_CLIENT_SECRET holds characters that cannot be sent"),
    ],
)
def test_check_checks_an_oauth_connections_client_secret(
    ops_url: str,
    connections: Path,
    clio: ClioSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    secret: str | None,
    says: str,
) -> None:
    """Only ``token_env`` was checked: an OAuth connection's client secret unset, empty, a
    placeholder or pasted with typographic quotes passed ``check``."""
    connections.write_text(connections.read_text() + OAUTH.format(url=clio.url))
    env(monkeypatch, ops_url, connections, TRIAL_CLIENT_ID="client-id-1")
    if secret is None:
        monkeypatch.delenv("TRIAL_CLIENT_SECRET", raising=False)
    else:
        monkeypatch.setenv("TRIAL_CLIENT_SECRET", secret)
    code, items, text = check(capsys)
    assert code == 1, text
    assert items["secret TRIAL_CLIENT_ID"] == "ok"
    assert items["secret TRIAL_CLIENT_SECRET"] == "FAIL"
    assert says in text
    assert items["connection oauthy"] == "FAIL"  # not probed: a secret is missing
    assert clio.requests == 0
    assert CANARY not in text


def test_check_checks_an_oauth_connections_client_id_for_a_header(
    ops_url: str,
    connections: Path,
    clio: ClioSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A client id travels in ``Authorization: Basic`` for some vendors (auth/vendors.py)."""
    connections.write_text(connections.read_text() + OAUTH.format(url=clio.url))
    env(
        monkeypatch,
        ops_url,
        connections,
        TRIAL_CLIENT_ID=f"{CANARY}\u00a0",  # a non-breaking space pasted after it
        TRIAL_CLIENT_SECRET="a-real-secret-5c1",
    )
    code, items, text = check(capsys)
    assert code == 1
    assert items["secret TRIAL_CLIENT_ID"] == "FAIL" and items["secret TRIAL_CLIENT_SECRET"] == "ok"
    assert CANARY not in text


@pytest.mark.parametrize("token", ["\u201cquoted\u201d", "tok\u00e9n", " spaced "])
def test_check_refuses_a_verification_token_the_webhook_would_refuse(
    ops_url: str,
    connections: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    token: str,
) -> None:
    env(monkeypatch, ops_url, connections, RC_VERIFICATION_TOKEN=token)
    code, items, text = check(capsys)
    assert code == 1, text
    assert items["secret RC_VERIFICATION_TOKEN"] == "FAIL"
    assert "RC_VERIFICATION_TOKEN holds characters that cannot be sent" in text
    assert token.strip() not in text
    # A worker never uses it: a warning there, not a refusal to start.
    settings = Settings.from_env()
    (line,) = [x for x in lines(settings, probe=False) if x.item.endswith(" RC_VERIFICATION_TOKEN")]
    assert not line.ok and not line.fatal


def test_check_shows_a_good_verification_token_and_refuses_a_placeholder(
    ops_url: str,
    connections: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env(monkeypatch, ops_url, connections, RC_VERIFICATION_TOKEN=CANARY)
    code, items, text = check(capsys)
    assert code == 0, text
    assert items["secret RC_VERIFICATION_TOKEN"] == "ok" and CANARY not in text
    monkeypatch.setenv("RC_VERIFICATION_TOKEN", "change-me")
    code, items, text = check(capsys)
    assert code == 1
    assert items["environment"] == "FAIL"
    assert "RC_VERIFICATION_TOKEN still holds a placeholder" in text
    monkeypatch.delenv("RC_VERIFICATION_TOKEN")  # unset: the webhook verifies nothing
    code, items, text = check(capsys)
    assert code == 0 and "secret RC_VERIFICATION_TOKEN" not in items


def test_check_names_a_database_the_server_does_not_have(
    ops_url: str,
    connections: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`STATE_URL=.../99` was "refused the connection (ResponseError)"."""
    with redis.Redis.from_url(ops_url) as client:
        count = int(client.config_get("databases")["databases"])  # 16 unless configured
    base = ops_url.rsplit("/", 1)[0]
    env(monkeypatch, ops_url, connections, STATE_URL=f"{base}/{count}")
    code, items, text = check(capsys)
    assert code == 1
    assert items["state"] == "FAIL" and items["cache"] == "ok"
    assert f"database {count} does not exist on this server" in text, text
    assert "refused the connection" not in text


@pytest.mark.parametrize("path", ["abc", "1x", "0/1"])
def test_a_database_that_is_not_a_number_is_refused(
    ops_url: str,
    connections: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    path: str,
) -> None:
    """`STATE_URL=.../abc` passed: redis-py ignores a path it cannot read and uses database 0,
    where the other roles' keys live."""
    base = ops_url.rsplit("/", 1)[0]
    env(monkeypatch, ops_url, connections, STATE_URL=f"{base}/{path}")
    code, items, text = check(capsys)
    assert code == 1
    assert items == {"environment": "FAIL"}
    assert f"STATE_URL='{base}/{path}': the database (the URL's path) must be a number" in text


def clio_budget(connections: Path, clio: ClioSimulator, rate: str) -> tuple[Runtime, str]:
    write(connections, clio, ("acme", "ACME_TRIAL_TOKEN"))
    connections.write_text(connections.read_text() + f'rate_limit = "{rate}"\n')
    runtime = Runtime(Settings.from_env())
    conn = runtime.config.connections["acme"]
    return runtime, keys.rate_bucket(conn.name, conn.instance)


def test_the_probe_is_paid_from_the_connections_budget(
    ops_url: str,
    connections: Path,
    clio: ClioSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env(monkeypatch, ops_url, connections, ACME_TRIAL_TOKEN=TOKEN)
    _runtime, bucket = clio_budget(connections, clio, "10/60")
    code, items, text = check(capsys)
    assert code == 0, text
    assert items["connection acme"] == "ok"
    assert clio.requests >= 1
    with redis.Redis.from_url(ops_url) as client:
        assert client.zcard(bucket) == clio.requests  # one token per request the CRM saw


def test_the_probe_waits_its_turn_when_the_budget_is_used_up(
    ops_url: str,
    connections: Path,
    clio: ClioSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Call pops took the whole budget: the probe must not add a request the CRM would count
    against the connection (and answer 429 to a call pop)."""
    env(monkeypatch, ops_url, connections, ACME_TRIAL_TOKEN=TOKEN)
    runtime, bucket = clio_budget(connections, clio, "4/60")
    conn = runtime.config.connections["acme"]
    limit = limit_for(conn)
    assert limit is not None
    RateLimiter(runtime.state_redis).acquire(conn, limit, limit.requests, priority=True)
    code, items, text = check(capsys)
    assert code == 0, text
    assert items["connection acme"] == "ok"
    assert "acme: not probed: its shared rate budget is used up" in text
    assert clio.requests == 0
    with redis.Redis.from_url(ops_url) as client:
        assert client.zcard(bucket) == limit.requests  # nothing more taken
