"""`auth connect NAME --listen HOST:PORT` where it cannot listen: one line, exit 2.

Found trying the product as a newcomer: a port already in use (another listener, a second
`connect`) was an OSError traceback, and a port above 65535 an OverflowError traceback.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from producers.cli import main

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def oauth_env(with_oauth: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", Fernet.generate_key().decode())
    return with_oauth


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_port_in_use_is_one_line(oauth_env: Path, busy_port: int, capsys: Capsys) -> None:
    code = main(["auth", "connect", "hs", "--listen", f"127.0.0.1:{busy_port}", "--timeout", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"contact-lookup: --listen 127.0.0.1:{busy_port}: cannot listen"), err
    assert err.count("\n") == 1, err


def test_a_port_out_of_range_is_one_line(oauth_env: Path, capsys: Capsys) -> None:
    code = main(["auth", "connect", "hs", "--listen", "127.0.0.1:99999", "--timeout", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "contact-lookup: --listen must be HOST:PORT, e.g. 127.0.0.1:8765\n", err


def test_listen_and_redirect_uri_together_are_refused(oauth_env: Path, capsys: Capsys) -> None:
    """Both were accepted and --redirect-uri silently ignored: the vendor would then have
    been sent a redirect URI other than the one the user registered and asked for."""
    argv = ["auth", "connect", "hs", "--listen", "127.0.0.1:8765", "--timeout", "1"]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--redirect-uri", "https://ops.example.com/oauth/callback"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --redirect-uri: not allowed with argument --listen" in err, err
