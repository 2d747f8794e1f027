"""`contact-lookup lookup` with its Redis down: one line on stderr, exit 1, no traceback.

Found trying the product as a newcomer: `lookup --local` printed redis-py's traceback (60
lines), and `lookup` without `--local` waited 20 s on Celery's result-backend reconnects and
then printed 135 lines ending in "The Celery application must be restarted". The other
commands (replay, relookup, watch) already said it in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localredis import free_port
from producers.cli import main
from tests.conftest import EXAMPLES

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def down(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every Redis role on a port nothing listens on."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", url)
    for name in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL", "STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(EXAMPLES / "contact-lookup.toml"))
    return url


@pytest.mark.parametrize("local", [True, False], ids=["local", "through-a-worker"])
def test_lookup_with_redis_down_says_so_in_one_line(
    down: str, capsys: Capsys, local: bool, tmp_path: Path
) -> None:
    args = ["lookup", "+14155550100", "--connection", "demo", "--timeout", "2"]
    assert main(args + (["--local"] if local else [])) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert err.startswith("contact-lookup: lookup: Redis is unreachable (ConnectionError")
    assert down.split("//")[1].split("/")[0] in err  # which Redis: host and port


def test_lookup_with_the_broker_down_blames_the_broker(
    pr_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    """The answer said "The broker at … is unreachable; the lookup was not queued. The CRM
    could not be reached or answered badly; try again shortly.": the CRM was never asked."""
    monkeypatch.setenv("REDIS_URL", pr_url)
    monkeypatch.setenv("BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    for name in ("RESULT_BACKEND", "CACHE_URL", "STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(EXAMPLES / "contact-lookup.toml"))
    assert main(["lookup", "+14155550100", "--connection", "demo", "--timeout", "2"]) == 1
    result = json.loads(capsys.readouterr().out)
    message = result["returnMessage"]["message"]
    assert "is unreachable; the lookup was not queued" in message
    assert "CRM" not in message, message
