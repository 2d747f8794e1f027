"""A private RabbitMQ virtual host for one test run, on the RabbitMQ already running here.

``python -m tests.rabbitvhost -- COMMAND...`` creates a vhost of its own name
(``contact-lookup-test-<pid>``) with ``rabbitmqctl``, grants the guest user on it, runs
COMMAND with ``BROKER_URL=amqp://guest:guest@127.0.0.1:5672/<vhost>``, and deletes the vhost
afterwards, so parallel runs never see each other's queues. ``AMQP_URL`` names another
server (its vhost is then used as given, not created).

Without RabbitMQ (no ``rabbitmqctl``, or nothing on port 5672) it exits 0 after saying so,
like the Redis tests skip on a laptop; under CI (``CI=true``) it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

HOST, PORT = "127.0.0.1", 5672


def listening(host: str = HOST, port: int = PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def private_vhost(name: str) -> Iterator[str]:
    """A RabbitMQ vhost of the caller's own (``name``-PID, deleted after), as an AMQP URL. For
    pytest: skips without RabbitMQ on 127.0.0.1:5672 or without rabbitmqctl; fails under CI."""
    import pytest

    if not listening() or shutil.which("rabbitmqctl") is None:
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ (127.0.0.1:5672 and rabbitmqctl) is required under CI")
        pytest.skip("no RabbitMQ on 127.0.0.1:5672 or no rabbitmqctl")
    vhost = f"{name}-{os.getpid()}"
    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{HOST}:{PORT}/{vhost}"
    finally:
        ctl("delete_vhost", vhost)


def unavailable(why: str) -> int:
    print(f"rabbitvhost: {why}", file=sys.stderr)
    if os.environ.get("CI"):
        print("rabbitvhost: RabbitMQ is required under CI", file=sys.stderr)
        return 1
    print("rabbitvhost: skipping the AMQP run", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not command:
        print("usage: python -m tests.rabbitvhost -- COMMAND...", file=sys.stderr)
        return 2
    given = os.environ.get("AMQP_URL", "").strip()
    if given:
        return subprocess.call(command, env=dict(os.environ, BROKER_URL=given))
    if not listening():
        return unavailable(f"nothing listens on {HOST}:{PORT}")
    if shutil.which("rabbitmqctl") is None:
        return unavailable("no rabbitmqctl to create a private vhost (or set AMQP_URL)")
    vhost = f"contact-lookup-test-{os.getpid()}"
    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        url = f"amqp://guest:guest@{HOST}:{PORT}/{vhost}"
        print(f"rabbitvhost: BROKER_URL={url}", flush=True)
        return subprocess.call(command, env=dict(os.environ, BROKER_URL=url))
    finally:
        ctl("delete_vhost", vhost)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
