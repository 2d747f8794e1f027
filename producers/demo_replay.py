"""The demo's second half: replay a recorded RingCentral stream through the real producer,
printing each call pop as it is published and each job's result as it completes."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import redis

from contact_lookup.redis_urls import redis_client
from contact_lookup.settings import Settings
from producers.pipeline import build_pipeline
from producers.replay import Replay

_PRINT = threading.Lock()


def _say(text: str) -> None:
    with _PRINT:
        print(text, flush=True)


def _names(result: dict[str, Any]) -> list[str]:
    return [
        c.get("name") for c in result.get("matchedContactInfo", []) if not c.get("isNewContact")
    ]


class _Summaries(io.TextIOBase):
    """Takes replay's JSON lines and prints one readable line per event instead."""

    def __init__(self) -> None:
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line.strip():
                _say(self._summary(json.loads(line)))
        return len(text)

    @staticmethod
    def _summary(line: dict[str, Any]) -> str:
        what = f"{line.get('purpose') or '-':<11} {line.get('phoneNumber') or '-':<14}"
        if line["action"] in ("skipped", "duplicate"):
            return f"   {line['action']:<19} {what} {line.get('reason')}"
        result = line.get("result") or {}
        note = ""
        resolution = result.get("resolution")
        if resolution:
            note = f" resolution: {resolution['contactId'] or resolution['reason']}"
        return (
            f"   {line['action']:<19} {what} -> {_names(result) or 'no contact'}"
            f"{' (cache)' if result.get('extraDataTracking', {}).get('isCached') else ''}"
            f"{note}"
        )


def _print_call_pops(client: redis.Redis, ready: threading.Event, stop: threading.Event) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("callpop:*")
    ready.set()
    while not stop.is_set():
        message: Any = pubsub.get_message(timeout=0.2)
        if message and message.get("type") == "pmessage":
            pop = json.loads(message["data"])
            names = _names(pop["result"])
            _say(
                f"   >> CALL POP on {message['channel'].decode()}: {pop['phoneNumber']} -> "
                f"{names or 'no contact'}"
            )
    pubsub.close()


def replay_and_print(settings: Settings, events: Path) -> bool:
    print(
        f"\nReplaying {events.name}: calls in and out, an internal call, an anonymous "
        "caller, SMS, fax, duplicates and out-of-order updates"
    )
    producer = build_pipeline(settings)
    producer.forget_events()  # a second demo run on the same Redis starts afresh
    producer.recorded = True  # a recording: its events are judged by their own clock
    client = redis_client(settings.state_url)
    ready, stop = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_print_call_pops, args=(client, ready, stop), daemon=True)
    watcher.start()
    ready.wait(5)
    try:
        with events.open(encoding="utf-8") as lines:
            code = Replay(producer, _Summaries(), wait_s=30).run(lines)
    finally:
        stop.set()
        watcher.join(2)
        client.close()
        producer.app.close()
    return code == 0
