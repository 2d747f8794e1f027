"""``contact-lookup check``: is this deployment fit to run? One line per item, exit 1 on any
failure.

The items and their order are ``worker.checks`` (environment, connections file, secrets,
broker, result backend, cache, state, each connection's credentials probe); a worker runs the
same ones when it starts (``worker.startup_checks``). This module only prints them.
"""

from __future__ import annotations

from typing import TextIO

from worker.checks import PROBE_NUMBER, Line, environment, lines

__all__ = ["PROBE_NUMBER", "run"]


def run(out: TextIO) -> int:
    """Print one line per item to ``out``; 0 when every item is ok, else 1."""
    settings, first = environment()
    seen: list[Line] = [first]
    print(first.text(), file=out, flush=True)
    if settings is not None:  # without settings, nothing else can be checked
        for line in lines(settings):
            seen.append(line)
            print(line.text(), file=out, flush=True)
    failed = [line for line in seen if not line.ok]
    print(f"check: {len(seen) - len(failed)} ok, {len(failed)} failed", file=out)
    return 1 if failed else 0
