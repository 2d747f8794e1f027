"""The public command (`contact-lookup lookup --local`) end to end against a real Redis: one
cache round trip, extension lookups, invalid numbers, resolvers and exit codes. The cache and
refresh rules themselves are tested on the service, in tests/core/test_cache_rules.py."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from producers.cli import main
from tests.conftest import EXAMPLES


@pytest.fixture
def env(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    contacts = tmp_path / "contacts.json"
    shutil.copy(EXAMPLES / "contacts.json", contacts)
    (tmp_path / "cl.toml").write_text(
        (EXAMPLES / "contact-lookup.toml").read_text()
        + '\n[connections.other_account]\ncrm = "json"\ncontacts = "contacts.json"\n'
        'rc_account = "222"\nformats = "(***) ***-****"\n'
        '\n[connections.noext]\ncrm = "json"\ncontacts = "contacts.json"\n'
        '\n[connections.secretive]\ncrm = "json"\ncontacts = "contacts.json"\n'
        'token_env = "UNSET_TOKEN_FOR_TEST"\n'
    )
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(tmp_path / "cl.toml"))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CACHE_TTL", "300")
    monkeypatch.delenv("UNSET_TOKEN_FOR_TEST", raising=False)
    return contacts


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["lookup", *args, "--local"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def edit(path: Path, change: Any) -> None:
    records = json.loads(path.read_text())
    records = change(records)
    path.write_text(json.dumps(records))
    # mtime granularity: make sure the connector sees a new stamp even within one tick
    later = time.time() + 2
    os.utime(path, (later, later))


def ids(result: dict[str, Any]) -> list[str]:
    return [c["id"] for c in result["matchedContactInfo"]]


def contact_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter("cl:v1:contacts:*"))


def test_match_through_format_then_cache_hit_makes_no_crm_request(
    env: Path, capsys: pytest.CaptureFixture[str], redis_client: redis.Redis
) -> None:
    code, first = run(capsys, "4155550100", "--connection", "demo")
    assert code == 0 and ids(first) == ["c-1001", "createNewContact"]
    assert first["matchedContactInfo"][0]["phone"] == "(415) 555-0100"
    assert "isCached" not in first["extraDataTracking"]
    # The CRM forgets the contact; a cached answer must still come back, with no request.
    edit(env, lambda rs: [r for r in rs if r["id"] != "c-1001"])
    code, second = run(capsys, "+14155550100", "--connection", "demo", "--debug")
    assert code == 0 and ids(second) == ["c-1001", "createNewContact"]
    assert second["extraDataTracking"] == {"isCached": True}
    assert second["debugTrace"] == []
    ttl = redis_client.ttl(contact_keys(redis_client)[0])
    assert 0 < ttl <= 300


def test_extension_lookup_and_its_switch(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, found = run(capsys, "102", "--connection", "demo", "--extension")
    assert code == 0 and ids(found) == ["c-1008", "createNewContact"]
    code, off = run(capsys, "102", "--connection", "noext", "--extension")
    assert code == 1 and "Extension lookup is off" in off["returnMessage"]["message"]


def test_invalid_number_fails_without_crm_request(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = run(capsys, "555-01", "--connection", "demo", "--debug")
    assert code == 1 and result["successful"] is False
    assert result["returnMessage"]["messageType"] == "warning"
    assert "not a valid phone number" in result["returnMessage"]["message"]
    assert result["debugTrace"] == []  # no CRM request was made


def test_resolver_on_a_shared_number(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, result = run(capsys, "+14155550123", "--connection", "demo", "--resolve", "earliest-created")
    # c-1004's /Date(1420070400000)/ is 2015-01-01, older than 2019's two.
    assert result["resolution"] == {
        "strategy": "earliest-created",
        "contactId": "c-1004",
        "reason": "earliest-created",
    }
    created = {c["id"]: c.get("createdDate") for c in result["matchedContactInfo"]}
    assert created["c-1004"] == "2015-01-01T00:00:00Z"
    assert created["c-1003"] == "2019-01-01T00:00:00Z"
    assert created["c-1002"] == "2019-07-01T06:00:00Z"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+14155550100", "--connection", "nope"], "unknown connection 'nope'"),
        (["+14155550100", "--connection", "secretive"], "UNSET_TOKEN_FOR_TEST"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    env: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["lookup", *args, "--local"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_config_file_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(tmp_path / "missing.toml"))
    assert main(["lookup", "+14155550100", "--connection", "demo", "--local"]) == 2
    assert "not found" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["lookup", "+14155550100"])  # --connection is required
    assert exit_.value.code == 2
