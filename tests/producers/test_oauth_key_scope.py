"""Only what decrypts OAuth tokens needs TOKEN_ENCRYPTION_KEY (README: "needed only with
auth = oauth2 / jwt-bearer"; Deployment: "workers and the auth commands").

Found trying the product as a newcomer: with one `auth = "oauth2"` connection in the file and
no key, `replay`, `relookup`, the webhook (a gunicorn worker traceback, "Worker failed to
boot") and `lookup --local` of a plain token connection all refused to start, though none of
them reads a token. A lookup that does need the key still says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producers.cli import main

Capsys = pytest.CaptureFixture[str]


def test_replay_needs_no_key(with_oauth: Path, tmp_path: Path, capsys: Capsys) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    assert main(["replay", str(events)]) == 0, capsys.readouterr().err


def test_a_token_connection_looks_up_without_the_key(with_oauth: Path, capsys: Capsys) -> None:
    assert main(["lookup", "+14155550100", "--connection", "demo", "--local"]) == 0
    assert json.loads(capsys.readouterr().out)["successful"] is True


def test_an_oauth_lookup_still_names_the_missing_key(with_oauth: Path, capsys: Capsys) -> None:
    code = main(["lookup", "+14155550100", "--connection", "hs", "--local"])
    out, err = capsys.readouterr()
    text = out + err
    assert code in (1, 2)
    assert "TOKEN_ENCRYPTION_KEY is not set" in text, text


def test_auth_status_without_oauth_connections_needs_no_key(
    env: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It stopped with "TOKEN_ENCRYPTION_KEY is not set: OAuth connections need a Fernet key"
    in a file that has none; README: one JSON line per connection."""
    monkeypatch.delenv("TOKEN_ENCRYPTION_KEY", raising=False)
    assert main(["auth", "status"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["connection"], s["auth"], s["state"]) for s in lines] == [
        ("demo", "token", "valid"),
        ("sales", "token", "valid"),
    ]
