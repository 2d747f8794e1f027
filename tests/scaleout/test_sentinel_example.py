"""``examples/docker-compose.sentinel.yml`` run without Docker: the same topology as local
processes, from the example's own commands and URLs.

The example is read as Compose reads it (``${VAR:?...}``/``${VAR:-...}`` substitution, ``$$``
for a literal ``$``; Compose file reference, "Interpolation":
https://docs.docker.com/reference/compose-file/interpolation/). Its master and replica run
its ``redis-server`` arguments, its three sentinels run its own ``sh -c`` script (which
writes their configuration), and the worker and the webhook get the ``sentinel://`` URLs of
its ``environment`` section. Only what Docker would provide is replaced, and each
replacement must find its text (so a changed example fails here instead of running
something else): service names and ports become 127.0.0.1 and free ports, the sentinels'
``/tmp/s.conf`` a file of the test's own. The cache Redis of the base compose file stands in
as a plain local Redis with the same password.

A lookup and a webhook event succeed; the master is SIGKILLed; after the sentinels promote
the replica (the example's own ``down-after-milliseconds``, 5 s), a lookup and an event sent
through the same, unrestarted worker and webhook succeed again.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from contact_lookup.core.request import LookupRequest
from contact_lookup.redis_urls import parse_sentinel, redis_client
from contact_lookup.settings import Settings
from localredis import EmbeddedRedis, redis_server_binary
from producers.pipeline import build_pipeline
from producers.webhook import create_webhook_app
from tasks.enqueue import enqueue
from tests.conftest import EXAMPLES
from tests.fakecrm import wait_for
from tests.faults.faultkit import META_PREFIX, WorkerProcess, base_env, figure
from tests.producers.conftest import variant, write_config
from tests.scaleout.sentinelkit import SentinelSet, post_until_accepted

EXAMPLE = EXAMPLES / "docker-compose.sentinel.yml"
PASSWORD = "s3nt/inel#pw@1:x"  # a generated password may hold any of / # @ :
VISIBILITY_TIMEOUT_S = 5  # the example's base has 600: a held job would wait that long
KNOWN = "+14155550100"  # examples/contacts.json: a contact of the demo connection


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise AssertionError(f"the example requires {name}: {arg}")
        if op == ":-" and not value:
            return arg or ""
        return value

    return re.sub(r"\$\$|\$\{(\w+)(?:(:\?|:-)([^}]*))?\}", one, text)


def replaced(text: str, old: str, new: str) -> str:
    assert old in text, f"the example no longer holds {old!r}"
    return text.replace(old, new)


class Example:
    """The parsed example, with REDIS_PASSWORD set."""

    def __init__(self, password: str) -> None:
        self.compose: dict[str, Any] = yaml.safe_load(
            interpolate(EXAMPLE.read_text(), {"REDIS_PASSWORD": password})
        )
        self.services: dict[str, Any] = self.compose["services"]

    def redis_args(self, service: str) -> list[str]:
        """A redis-server service's arguments (after the program name)."""
        program, *args = shlex.split(self.services[service]["command"])
        assert program == "redis-server", program
        return args

    def sentinel_script(self, service: str) -> str:
        spec = self.services[service]
        assert spec["entrypoint"] == ["sh", "-c"], spec["entrypoint"]
        (script,) = spec["command"]
        return str(script)

    def environment(self, service: str) -> dict[str, str]:
        return {k: str(v) for k, v in self.services[service]["environment"].items()}


@pytest.fixture
def example_set(tmp_path: Path) -> Iterator[tuple[Example, SentinelSet]]:
    example = Example(PASSWORD)
    sentinels = [name for name in example.services if name.startswith("sentinel-")]
    assert len(sentinels) == 3

    def replica_args(master_port: int) -> list[str]:
        args = example.redis_args("redis-replica")
        at = args.index("--replicaof")
        assert args[at + 1 : at + 3] == ["redis-master", "6379"], args
        args[at + 1 : at + 3] = ["127.0.0.1", str(master_port)]
        return args

    def sentinel_command(port: int, master_port: int, index: int) -> list[str]:
        script = example.sentinel_script(sentinels[index])
        script = replaced(script, "port 26379", f"port {port}\\nbind 127.0.0.1\\ndir {tmp_path}")
        script = replaced(script, "redis-master 6379", f"127.0.0.1 {master_port}")
        script = replaced(script, "/tmp/s.conf", str(tmp_path / f"sentinel-{index}.conf"))
        script = replaced(script, "exec redis-server ", f"exec {redis_server_binary()} ")
        return ["sh", "-c", script]

    master_name = re.search(r"sentinel monitor (\S+) ", example.sentinel_script(sentinels[0]))
    assert master_name is not None
    group = SentinelSet(
        tmp_path,
        master_name=master_name.group(1),
        password=PASSWORD,
        master_args=example.redis_args("redis-master"),
        replica_args=replica_args,
        sentinel_command=sentinel_command,
        sentinel_env={
            **os.environ,
            **example.services[sentinels[0]]["environment"],
        },
    ).start()
    try:
        yield example, group
    finally:
        group.stop()


def local_urls(env: Mapping[str, str], sentinels: SentinelSet) -> dict[str, str]:
    """The example's URLs with each ``sentinel-N:26379`` at its local sentinel's port."""
    out = {}
    for name, url in env.items():
        if not url.startswith("sentinel://"):
            continue
        for i, port in enumerate(sentinels.ports):
            url = replaced(url, f"//sentinel-{i + 1}:26379", f"//127.0.0.1:{port}")
        out[name] = url
    return out


def test_the_sentinel_example_runs_and_survives_a_failover(
    example_set: tuple[Example, SentinelSet], tmp_path: Path
) -> None:
    example, sentinels = example_set
    assert sentinels.master_name == "cl-master"
    for service in ("callpop-worker", "logging-worker", "webhook", "flower"):
        assert example.environment(service) == example.environment("webhook")
    urls = local_urls(example.environment("webhook"), sentinels)
    assert set(urls) == {"BROKER_URL", "RESULT_BACKEND", "STATE_URL"}
    for name, url in urls.items():
        parsed = parse_sentinel(url, name)
        assert parsed.master_name == sentinels.master_name
        assert parsed.password is None  # REDIS_PASSWORD is inserted, percent-encoded
    cache = EmbeddedRedis(password=PASSWORD).start()  # the base compose file's cache-redis
    toml = write_config(tmp_path, 'default = "demo"\n')
    env = base_env(
        **urls,
        REDIS_PASSWORD=PASSWORD,
        CACHE_URL=f"redis://127.0.0.1:{cache.port}/0",
        REDIS_URL=f"redis://127.0.0.1:{cache.port}/0",
        CONTACT_LOOKUP_CONFIG=str(toml),
        VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT_S),
        RETRY_MAX_DELAY=str(VISIBILITY_TIMEOUT_S - 1),
        CALL_POP_DEADLINE=str(VISIBILITY_TIMEOUT_S - 1),
    )
    settings = Settings.from_env(env)
    producer = build_pipeline(settings)
    web = create_webhook_app(producer, settings).test_client()
    worker = WorkerProcess(env, tmp_path, "example", queues="call_log,message_log", concurrency=4)
    results = redis_client(settings.result_backend)  # follows the master too
    old_master = sentinels.master.port

    def events_done(count: int) -> bool:
        keys = list(results.scan_iter(META_PREFIX + "*", count=500))
        return sum(b'"SUCCESS"' in (results.get(k) or b"") for k in keys) >= count

    refused = 0
    try:
        worker.start(60)
        # Before: a lookup and an event, on the example's master.
        lookup = enqueue(producer.app, "demo", LookupRequest(KNOWN, purpose="call_log"))
        before = lookup.get(timeout=30)
        assert before["successful"] and before["matchedContactInfo"], before
        refused += post_until_accepted(
            web, variant("sms_inbound", uuid="example-1", body__id="910001")
        )
        assert wait_for(lambda: events_done(2), 30)

        sentinels.master.proc.kill()  # type: ignore[union-attr]  # SIGKILL
        killed_at = time.monotonic()
        assert wait_for(lambda: sentinels.master_port() != old_master, 60), "no failover"
        failover_s = time.monotonic() - killed_at
        assert sentinels.master_port() == sentinels.replica.port

        # After: the same worker and webhook, nothing restarted or reconfigured.
        refused += post_until_accepted(
            web, variant("sms_inbound", uuid="example-2", body__id="910002")
        )
        lookup = enqueue(
            producer.app, "demo", LookupRequest(KNOWN, purpose="call_log", force_refresh=True)
        )
        after = lookup.get(timeout=60)
        assert after["successful"] and after["matchedContactInfo"], after
        assert wait_for(lambda: events_done(4), VISIBILITY_TIMEOUT_S + 60), worker.logs()[-3000:]
        on_replica = results.connection_pool.get_master_address()  # type: ignore[attr-defined]
    finally:
        worker.stop()
        producer.app.close()
        results.close()
        cache.cleanup()
    assert on_replica[1] == sentinels.replica.port
    figure(
        "sentinel_example",
        lookups=2,
        events=2,
        failover_s=round(failover_s, 1),
        refused_503=refused,
    )
