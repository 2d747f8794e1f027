"""Producers' fixtures: Redis database 12 (flushed before and after each test), a connections
file over examples/contacts.json, the environment the commands read, and readers for what
landed on the queues (kombu's Redis transport keeps a queue as a list named after it)."""

from __future__ import annotations

import base64
import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.core import supersede
from producers.cli import main
from tasks.celery_app import ContactLookupCelery, create_app
from tests.conftest import AMQP_BROKER_URL, EXAMPLES, ROOT, flushed_db, settings_for

PRODUCERS_DB = 12
FIXTURES = ROOT / "tests" / "fixtures" / "ringcentral"
DEMO_EXT = "1474839016"
SALES_EXT = "62242421016"

CONNECTIONS = """
[connections.demo]
crm = "json"
contacts = "contacts.json"
rc_account = "809646016"
formats = "(***) ***-****, ***-***-****"
region = "US"
resolve = "earliest-created"
create_option = true
extension_lookup = true
outbound_pop = false

[connections.sales]
crm = "json"
contacts = "contacts.json"
rc_account = "809646016"
formats = "(***) ***-****, ***-***-****"
outbound_pop = true
extension_lookup = false
"""


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def variant(name: str, uuid: str | None = None, **changes: Any) -> dict[str, Any]:
    """A copy of a fixture with a new uuid and body fields replaced (dotted paths)."""
    data = copy.deepcopy(fixture(name))
    if uuid is not None:
        data["uuid"] = uuid
    for path, value in changes.items():
        target: Any = data
        *head, last = path.split("__")
        for part in head:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return data


@pytest.fixture
def pr_url() -> Iterator[str]:
    with flushed_db(PRODUCERS_DB) as url:
        yield url


@pytest.fixture
def client(pr_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(pr_url)
    yield c
    c.close()


def write_config(directory: Path, extensions: str, telephony: str = "settle_seconds = 0\n") -> Path:
    """The test connections file. ``telephony``: its ``[telephony]`` table; by default no
    settle countdown, so a call log is on its queue at once (on RabbitMQ a countdown is a
    delayed delivery, not on the queue) and the tests apply the supersede rule to the queued
    jobs (``executed``) instead of waiting the window."""
    shutil.copy(EXAMPLES / "contacts.json", directory / "contacts.json")
    path = directory / "cl.toml"
    path.write_text(CONNECTIONS + "\n[extensions]\n" + extensions + "\n[telephony]\n" + telephony)
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, f'"{SALES_EXT}" = "sales"\ndefault = "demo"\n')


@pytest.fixture
def env(pr_url: str, config_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The commands' environment: everything on database 12, the test connections file."""
    monkeypatch.setenv("REDIS_URL", pr_url)
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(config_path))
    for name in (
        "BROKER_URL",
        "RESULT_BACKEND",
        "CACHE_URL",
        "STATE_URL",
        "RC_VERIFICATION_TOKEN",
        "CALL_POP_DEADLINE",
        "CACHE_TTL",
    ):
        monkeypatch.delenv(name, raising=False)
    if AMQP_BROKER_URL:
        monkeypatch.setenv("BROKER_URL", AMQP_BROKER_URL)
    return config_path


# One OAuth connection beside the demo ones (its client credentials set, no token stored).
OAUTH_CONNECTION = """
[connections.hs]
crm = "hubspot"
base_url = "http://127.0.0.1:9"
auth = "oauth2"
client_id_env = "HS_ID_FOR_TEST"
client_secret_env = "HS_SECRET_FOR_TEST"
"""


@pytest.fixture
def with_oauth(env: Path, config_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The connections file with ``OAUTH_CONNECTION`` added, its client credentials set and
    no ``TOKEN_ENCRYPTION_KEY``."""
    text = config_path.read_text().replace("[extensions]", OAUTH_CONNECTION + "\n[extensions]")
    config_path.write_text(text)
    monkeypatch.delenv("TOKEN_ENCRYPTION_KEY", raising=False)
    monkeypatch.setenv("HS_ID_FOR_TEST", "id")
    monkeypatch.setenv("HS_SECRET_FOR_TEST", "secret")
    return config_path


@pytest.fixture
def celery_app(pr_url: str, config_path: Path) -> Iterator[ContactLookupCelery]:
    import tasks.find_contact  # noqa: F401  (registers the shared task)

    app = create_app(settings_for(pr_url, config_path))
    yield app
    app.close()


def queued(
    client: redis.Redis, queue: str, amqp_url: str | None = AMQP_BROKER_URL
) -> list[dict[str, Any]]:
    """The find_contact messages waiting on a queue, oldest first: id, kwargs, expires.

    ``client`` is the broker Redis; on a RabbitMQ run (``amqp_url``) the queue is read from
    RabbitMQ instead. A test that sends to a Redis broker of its own passes ``amqp_url=None``.
    """
    if amqp_url:
        return amqp_queued(amqp_url, queue)
    out = []
    for raw in reversed(client.lrange(queue, 0, -1)):  # kombu LPUSHes, consumers BRPOP
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        out.append(
            {
                "id": message["headers"]["id"],
                "kwargs": body[1],
                "expires": message["headers"].get("expires"),
            }
        )
    return out


def amqp_queued(url: str, queue: str) -> list[dict[str, Any]]:
    """RabbitMQ's side of ``queued``: every message fetched unacknowledged, then the channel
    closed, which returns them all to the queue (in order) for the workers."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    out = []
    with Connection(url, connect_timeout=5) as conn:
        channel = conn.channel()
        try:
            while (message := channel.basic_get(queue, no_ack=False)) is not None:
                headers = message.properties.get("application_headers", {})
                body = json.loads(message.body)
                out.append(
                    {"id": headers["id"], "kwargs": body[1], "expires": headers.get("expires")}
                )
        except NotFound:  # never declared: nothing was sent to it
            return []
        channel.close()
    return out


def executed(state: redis.Redis, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs a worker would run: those the supersede rule does not drop (a call log whose
    ``decisionVersion`` is no longer the newest for its ``supersedeKey``), evaluated on the
    queued jobs instead of waiting for the settle window (contact_lookup.core.supersede)."""
    return [
        j
        for j in jobs
        if supersede.superseded(
            state, j["kwargs"].get("supersedeKey"), j["kwargs"].get("decisionVersion")
        )
        is None
    ]


def all_queued(client: redis.Redis) -> dict[str, list[dict[str, Any]]]:
    return {q: queued(client, q) for q in ("call_pop", "call_log", "message_log", "relookup")}


def replay(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, events: list[Any], *flags: str
) -> tuple[int, list[dict[str, Any]]]:
    """Run ``contact-lookup replay`` over events (dicts, or raw strings for bad lines)."""
    path = tmp_path / "events.jsonl"
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))
    capsys.readouterr()
    # The fixtures are recordings (2020, 2024): their age is judged by their own eventTimes.
    code = main(["replay", str(path), "--recorded", *flags])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]
