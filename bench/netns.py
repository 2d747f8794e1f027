"""Several "hosts" on one machine: Linux network namespaces joined by veth pairs to a bridge.

``Hosts(n)`` creates a bridge ``clbr<id>`` with address ``10.214.<k>.1/24`` in the root
namespace and, per host, a namespace ``cl-<id>-h<i>`` whose only interface (besides its own
loopback) is the namespace end of a veth pair, ``10.214.<k>.<i+1>/24``; the other end is
enslaved to the bridge. A process started with ``Hosts.command(i, argv)`` reaches the broker,
Redis and the CRM simulator only through its veth, at ``Hosts.gateway``; ``cut(i)`` takes
its link down (a host cut off), ``restore(i)`` brings it back. Everything is removed on exit.

Needs root and iproute2 (``ip netns``), as CI has; ``available()`` says whether it can run.
Traffic stays on addresses created here. ``bridge_redis`` is a private Redis the hosts reach
over the bridge. Shared by the multi-host tests (tests/scaleout/test_hosts.py) and the
several-hosts benchmark (bench/hosts_bench.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from types import TracebackType

from localredis import EmbeddedRedis

SKIP_REASON = "needs root and ip netns"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


class Hosts:
    def __init__(self, count: int) -> None:
        self.count = count
        self.id = os.getpid() % 10000
        self.subnet = 10 + os.getpid() % 240
        self.bridge = f"clbr{self.id}"
        self.gateway = f"10.214.{self.subnet}.1"
        self.names = [f"cl-{self.id}-h{i}" for i in range(count)]
        self.created: list[str] = []

    def host_link(self, i: int) -> str:
        return f"cl{self.id}h{i}a"

    def address(self, i: int) -> str:
        return f"10.214.{self.subnet}.{i + 2}"

    def __enter__(self) -> Hosts:
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            self.created.append("bridge")
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for i, name in enumerate(self.names):
                ip("netns", "add", name)
                self.created.append(name)
                outside, inside = self.host_link(i), f"cl{self.id}h{i}b"
                ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                ip("link", "set", inside, "netns", name)
                ip("link", "set", outside, "master", self.bridge)
                ip("link", "set", outside, "up")
                ip("-n", name, "addr", "add", f"{self.address(i)}/24", "dev", inside)
                ip("-n", name, "link", "set", inside, "up")
                ip("-n", name, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def command(self, i: int, argv: list[str]) -> list[str]:
        """``argv`` run inside host ``i``'s namespace."""
        return ["ip", "netns", "exec", self.names[i], *argv]

    def cut(self, i: int) -> None:
        ip("link", "set", self.host_link(i), "down")

    def restore(self, i: int) -> None:
        ip("link", "set", self.host_link(i), "up")

    def remove(self) -> None:
        for name in self.names:
            if name in self.created:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        if "bridge" in self.created:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
        self.created.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def bridge_redis(hosts: Hosts) -> EmbeddedRedis:
    """A private Redis (started) on loopback and on the bridge: what every host reaches, at
    ``redis://<hosts.gateway>:<port>``. ``cleanup()`` stops it and removes its files."""
    server = EmbeddedRedis(extra=["--bind", "127.0.0.1", hosts.gateway, "--protected-mode", "no"])
    server.start()
    return server
