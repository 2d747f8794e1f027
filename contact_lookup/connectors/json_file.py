"""``crm = "json"``: a strict, exact-match CRM backed by a JSON file of contact records.

Records are in the spec's contact shape, with ``phone`` or ``phones``; a record matches a
query only when one of its phone strings equals the query exactly, like the exact-match CRMs
that make overridingFormat necessary. The file is re-read whenever it changes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contact_lookup.connectors.base import EXTENSIONS, PHONES, Connector, SearchPage
from contact_lookup.model.errors import CRMUnavailable

# path -> ((mtime_ns, size), index of phone string -> records)
_INDEX: dict[Path, tuple[tuple[int, int], dict[str, list[Mapping[str, Any]]]]] = {}
_LOCK = threading.Lock()


def _phones(record: Mapping[str, Any]) -> list[str]:
    phones = record.get("phones")
    values = phones if isinstance(phones, list) else []
    if isinstance(record.get("phone"), str):
        values = [record["phone"], *values]
    return [p for p in values if isinstance(p, str)]


def _load(path: Path) -> dict[str, list[Mapping[str, Any]]]:
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise CRMUnavailable(f"The contacts file {path} cannot be read.") from exc
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _LOCK:
        cached = _INDEX.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CRMUnavailable(f"The contacts file {path} is not valid JSON.") from exc
        if not isinstance(records, list):
            raise CRMUnavailable(f"The contacts file {path} must hold a JSON array.")
        index: dict[str, list[Mapping[str, Any]]] = {}
        for record in records:
            if isinstance(record, Mapping):
                for phone in dict.fromkeys(_phones(record)):
                    index.setdefault(phone, []).append(record)
        _INDEX[path] = (stamp, index)
        return index


class JsonFileConnector(Connector):
    crm = "json"
    # The file stores an extension like any number ("phone": "102"): its phone strings are
    # its extension values too.
    supports_extension = True

    def search(self, query: str) -> SearchPage:
        assert self.connection.contacts is not None  # enforced when the config is read
        started = _now_ms()
        matches = _load(self.connection.contacts).get(query, [])
        self.trace.record(
            "GET", f"file://{self.connection.contacts}?phone={query}", 200, _now_ms() - started
        )
        records = []
        for record in matches:
            item = {k: v for k, v in record.items() if k not in ("phones", "extensions")}
            item["phone"] = query
            item[PHONES] = item[EXTENSIONS] = _phones(record)
            records.append(item)
        return SearchPage(records)


def _now_ms() -> float:
    return time.monotonic() * 1000
