"""Redis Sentinel on 127.0.0.1 for the scale-out tests: a master, a replica and three
sentinels (``SentinelSet``), and a webhook client that redelivers like RingCentral.

By default the sentinels get a minimal configuration written here (``plain_sentinel``);
``tests/scaleout/test_sentinel_example.py`` passes the master's, the replica's and the
sentinels' own commands from ``examples/docker-compose.sentinel.yml`` instead.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from localredis import EmbeddedRedis, free_port, redis_server_binary
from tests.fakecrm import wait_for

MASTER = "cl-master"
# (this sentinel's port, the master's port, its index) -> the command that runs it
SentinelCommand = Callable[[int, int, int], list[str]]


def plain_sentinel(tmp: Path, master_name: str = MASTER) -> SentinelCommand:
    """A sentinel watching the master with a 1 s down-after (failover in about 2 s)."""

    def command(port: int, master_port: int, index: int) -> list[str]:
        conf = tmp / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
            f"sentinel monitor {master_name} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {master_name} 1000\n"
            f"sentinel failover-timeout {master_name} 10000\n"
            f"sentinel parallel-syncs {master_name} 1\n"
        )
        return [redis_server_binary(), str(conf), "--sentinel"]

    return command


class SentinelSet:
    """A master, a replica and three sentinels, all on 127.0.0.1."""

    def __init__(
        self,
        tmp: Path,
        *,
        master_name: str = MASTER,
        password: str | None = None,
        master_args: Sequence[str] = (),
        replica_args: Callable[[int], list[str]] | None = None,
        sentinel_command: SentinelCommand | None = None,
        sentinel_env: Mapping[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.master_name = master_name
        self.password = password
        self.master = EmbeddedRedis(password=password, extra=list(master_args))
        self.replica = EmbeddedRedis(password=password, extra=[])
        self.replica_args = replica_args or (lambda port: ["--replicaof", "127.0.0.1", str(port)])
        self.sentinel_command = sentinel_command or plain_sentinel(tmp, master_name)
        self.sentinel_env = dict(sentinel_env) if sentinel_env is not None else None
        self.ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.extra = self.replica_args(self.master.port)
        self.replica.start()
        for index, port in enumerate(self.ports):
            self.sentinels.append(
                subprocess.Popen(
                    self.sentinel_command(port, self.master.port, index),
                    env=self.sentinel_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        assert wait_for(self.ready, 30), "the sentinels never saw the replica and each other"
        return self

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1, decode_responses=True)

    def ready(self) -> bool:
        """The replica is in sync with the master and every sentinel knows the others."""
        try:
            with redis.Redis(
                port=self.replica.port, password=self.password, socket_timeout=1
            ) as replica:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            for port in self.ports:
                with self.sentinel(port) as s:
                    if len(s.sentinel_slaves(self.master_name)) < 1:
                        return False
                    if len(s.sentinel_sentinels(self.master_name)) < 2:
                        return False
            return True
        except redis.RedisError:
            return False

    def master_port(self) -> int:
        with self.sentinel(self.ports[0]) as s:
            return int(s.sentinel_get_master_addr_by_name(self.master_name)[1])

    def url(self, db: int) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        first, *rest = (f"sentinel://127.0.0.1:{p}" for p in self.ports)
        first = first.replace("sentinel://", f"sentinel://{auth}")
        return ";".join([f"{first}/{db}", *rest]) + f"?master_name={self.master_name}"

    def stop(self) -> None:
        for proc in self.sentinels:
            proc.kill()
            proc.wait(10)
        self.master.cleanup()
        self.replica.cleanup()


def post_until_accepted(web: Any, event: dict[str, Any], deadline_s: float = 60) -> int:
    """POST like RingCentral: redeliver on 503 until accepted; the number of 503s."""
    refused = 0
    deadline = time.monotonic() + deadline_s
    while True:
        response = web.post("/webhook/ringcentral", json=event)
        if response.status_code == 200:
            assert response.get_json()["actions"] == ["enqueued"], response.get_json()
            return refused
        assert response.status_code == 503, (response.status_code, response.get_data())
        refused += 1
        assert time.monotonic() < deadline, "never accepted after the failover"
        time.sleep(0.1)  # RingCentral's redelivery interval, shortened
