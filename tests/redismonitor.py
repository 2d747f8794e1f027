"""What clients send to Redis while some code runs, as Redis's ``MONITOR`` sees it: the
round trips a code path makes, on the suite's private Redis (commands a script runs inside
Redis are marked ``lua`` there)."""

from __future__ import annotations

from collections.abc import Callable

import redis

# A connection's own set-up (the marker's connection) is not a round trip of the code.
SETUP = ("HELLO", "SELECT", "CLIENT")


def monitor(client: redis.Redis, run: Callable[[], object]) -> list[tuple[str, bool]]:
    """(command name, run by a script) for every command while ``run()`` ran, in order."""
    marker = "redismonitor-end"
    with client.monitor() as m:
        run()
        client.echo(marker)
        seen = []
        while True:
            cmd = m.next_command()
            if cmd["command"] == f"ECHO {marker}":
                return seen
            name = str(cmd["command"]).split(" ")[0].upper()
            if name not in SETUP:
                seen.append((name, cmd.get("client_type") == "lua"))


def client_commands(client: redis.Redis, run: Callable[[], object]) -> list[str]:
    """The names of the commands clients sent while ``run()`` ran (round trips), in order."""
    return [name for name, lua in monitor(client, run) if not lua]
