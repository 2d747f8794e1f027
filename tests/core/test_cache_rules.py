"""The spec's cache and refresh rules, on LookupService itself (no CLI, no worker), against
a real Redis and the strict ``json`` connector. Each CRM search is counted at the service's
only door to the CRM, its ``ConnectorSource``."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.compose import load_checked_config
from contact_lookup.connectors.base import Connector, FindOutcome
from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import Connection
from contact_lookup.model.trace import DebugTrace
from tests.conftest import EXAMPLES

TTL_S = 300


class CountingSource:
    """The real ConnectorFactory, counting the searches each built connector runs."""

    def __init__(self) -> None:
        self.factory = ConnectorFactory()
        self.searches = 0

    def build(self, connection: Connection, trace: DebugTrace | None = None) -> Connector:
        connector = self.factory.build(connection, trace)
        inner = connector.find

        def find(queries: list[str], *, extension: bool = False) -> FindOutcome:
            outcome = inner(queries, extension=extension)
            self.searches += len(outcome.queries)
            return outcome

        connector.find = find  # type: ignore[method-assign]
        return connector


@pytest.fixture
def contacts(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.json"
    shutil.copy(EXAMPLES / "contacts.json", path)
    (tmp_path / "cl.toml").write_text(
        (EXAMPLES / "contact-lookup.toml").read_text()
        + '\n[connections.other_account]\ncrm = "json"\ncontacts = "contacts.json"\n'
        'rc_account = "222"\nformats = "(***) ***-****"\n'
    )
    return path


@pytest.fixture
def source() -> CountingSource:
    return CountingSource()


@pytest.fixture
def service(
    contacts: Path, redis_client: redis.Redis, source: CountingSource
) -> Iterator[LookupService]:
    config = load_checked_config(str(contacts.parent / "cl.toml"))
    yield LookupService(config, ContactCache(redis_client, TTL_S), source)


def edit(path: Path, change: Any) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    later = time.time() + 2  # a new mtime even within one tick of the file system
    os.utime(path, (later, later))


def ids(result: dict[str, Any]) -> list[str]:
    return [c["id"] for c in result["matchedContactInfo"]]


def keys_of(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter("cl:v1:contacts:*"))


def test_a_hit_makes_no_crm_request_and_survives_the_crm_forgetting(
    service: LookupService, source: CountingSource, contacts: Path, redis_client: redis.Redis
) -> None:
    first = service.lookup("demo", LookupRequest("4155550100"))
    assert ids(first) == ["c-1001", "createNewContact"] and source.searches == 3
    edit(contacts, lambda rs: [r for r in rs if r["id"] != "c-1001"])
    second = service.lookup("demo", LookupRequest("+14155550100"))
    assert ids(second) == ["c-1001", "createNewContact"]
    assert second["extraDataTracking"] == {"isCached": True}
    assert source.searches == 3  # no request for the hit
    assert 0 < redis_client.ttl(keys_of(redis_client)[0]) <= TTL_S


def test_force_refresh_bypasses_the_read_and_overwrites(
    service: LookupService, source: CountingSource, contacts: Path
) -> None:
    service.lookup("demo", LookupRequest("+14155550123"))
    edit(contacts, lambda rs: [{**r, "name": "Renamed"} if r["id"] == "c-1003" else r for r in rs])
    cached = service.lookup("demo", LookupRequest("+14155550123"))
    assert "Alan Turing" in [c["name"] for c in cached["matchedContactInfo"]]
    before = source.searches
    fresh = service.lookup("demo", LookupRequest("+14155550123", force_refresh=True))
    assert source.searches == before + 3 and "isCached" not in fresh["extraDataTracking"]
    after = service.lookup("demo", LookupRequest("+14155550123"))
    assert after["extraDataTracking"] == {"isCached": True}
    assert "Renamed" in [c["name"] for c in after["matchedContactInfo"]]


def test_a_refresh_that_finds_nothing_deletes_the_stale_entry(
    service: LookupService, contacts: Path, redis_client: redis.Redis
) -> None:
    service.lookup("demo", LookupRequest("+442079460958"))
    assert len(keys_of(redis_client)) == 1
    edit(contacts, lambda rs: [r for r in rs if r["id"] != "c-1007"])
    fresh = service.lookup("demo", LookupRequest("+442079460958", force_refresh=True))
    assert ids(fresh) == ["createNewContact"]
    assert fresh["returnMessage"]["messageType"] == "warning"
    assert keys_of(redis_client) == []


def test_a_crm_error_never_changes_the_cache(
    service: LookupService, contacts: Path, redis_client: redis.Redis
) -> None:
    service.lookup("demo", LookupRequest("+14155550177"))
    before = {k: redis_client.get(k) for k in keys_of(redis_client)}
    contacts.write_text("{ this is not json")
    failed = service.find_contact("demo", LookupRequest("+14155550177", force_refresh=True))
    assert failed["successful"] is False and failed["matchedContactInfo"] == []
    assert failed["returnMessage"]["messageType"] == "danger"
    assert {k: redis_client.get(k) for k in keys_of(redis_client)} == before


def test_the_placeholder_is_never_cached(service: LookupService, redis_client: redis.Redis) -> None:
    result = service.lookup("demo", LookupRequest("+14155550999"))
    assert result["successful"] and ids(result) == ["createNewContact"]
    assert keys_of(redis_client) == []
    service.lookup("demo", LookupRequest("+14155550123"))
    stored = json.loads(redis_client.get(keys_of(redis_client)[0]) or b"null")
    assert stored and not any(c.get("isNewContact") for c in stored)


def test_the_key_covers_account_connection_and_formats(
    service: LookupService, source: CountingSource, redis_client: redis.Redis
) -> None:
    service.lookup("demo", LookupRequest("+14155550100"))
    other = service.lookup("other_account", LookupRequest("+14155550100"))
    assert "isCached" not in other["extraDataTracking"] and ids(other) == ["c-1001"]
    no_formats = service.lookup("demo", LookupRequest("+14155550100", overriding_format=""))
    assert "isCached" not in no_formats["extraDataTracking"]
    assert ids(no_formats) == ["createNewContact"]  # strict CRM: E.164 alone finds nothing
    assert len(keys_of(redis_client)) == 2


def test_the_fast_path_reads_the_same_entry(service: LookupService) -> None:
    assert service.cached("demo", LookupRequest("+14155550100")) is None
    service.lookup("demo", LookupRequest("+14155550100"))
    cached = service.cached("demo", LookupRequest("+14155550100"))
    assert cached is not None and ids(cached) == ["c-1001", "createNewContact"]
