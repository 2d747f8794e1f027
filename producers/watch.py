"""``contact-lookup watch [--extension ID]``: print call pops as they are published.

Subscribes to ``callpop:*:*`` (or ``callpop:*:{ID}``) on the state Redis (STATE_URL), where
the worker and the producers' cache fast path publish (docs/interface.md section 7), and prints
each message as one JSON line, ``{"rcAccountId", "rcExtensionId", "telephonySessionId",
"phoneNumber", "result"}``, until Ctrl-C (or ``--count`` messages).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import redis

from contact_lookup.core import keys


def pattern(extension: str | None) -> str:
    return keys.callpop_channel("*", extension or "*")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def watch(
    client: redis.Redis, out: TextIO, *, extension: str | None = None, count: int | None = None
) -> int:
    """Print call pops until interrupted or ``count`` were printed; returns how many."""
    pubsub = client.pubsub()
    pubsub.psubscribe(pattern(extension))
    printed = 0
    try:
        while (confirmed := pubsub.get_message(timeout=5.0)) is None:
            pass  # wait for the subscription to be in place before saying so
        if confirmed.get("type") == "psubscribe":
            print(f"watching {pattern(extension)} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        while count is None or printed < count:
            message = pubsub.get_message(timeout=1.0)
            if message is None or message.get("type") != "pmessage":
                continue
            _, account, extension_id = _text(message["channel"]).split(":", 2)
            try:
                payload = json.loads(message["data"])
            except ValueError:
                print(
                    f"watch: ignored a message that is not JSON on {_text(message['channel'])}",
                    file=sys.stderr,
                )
                continue
            line = {"rcAccountId": account, "rcExtensionId": extension_id}
            line.update(payload if isinstance(payload, dict) else {"payload": payload})
            out.write(json.dumps(line) + "\n")
            out.flush()
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        pubsub.close()
    return printed
