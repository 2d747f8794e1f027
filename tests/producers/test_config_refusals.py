"""Every command refuses a bad connections file or a setting that would break delivery at
start-up, with one line naming the file, table and key (and the closest valid key) or the
setting and its limit; never at the first lookup inside a worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from localredis import free_port
from producers.cli import main
from tests.conftest import ROOT
from tests.producers.conftest import CONNECTIONS, write_config

Capsys = pytest.CaptureFixture[str]

COMMANDS = [
    ["lookup", "+14155550100", "--connection", "demo", "--local"],
    ["replay", "EVENTS"],
    ["relookup", "NUMBERS", "--connection", "demo"],
]  # webhook and worker: in subprocesses below (they set up prometheus_client first)

BAD_FILES = [
    (
        CONNECTIONS.replace("extension_lookup = true", "extention_lookup = true"),
        "[connections.demo]: unknown key 'extention_lookup' for crm 'json'; "
        "did you mean 'extension_lookup'?",
    ),
    (
        CONNECTIONS + '\n[extentions]\ndefault = "demo"\n',
        "unknown key 'extentions'; did you mean 'extensions'?",
    ),
    (
        CONNECTIONS + '\n[telephony]\nrouting_extension = ["1"]\n',
        "[telephony]: unknown key 'routing_extension'; did you mean 'routing_extensions'?",
    ),
    (
        CONNECTIONS + '\n[extensions]\n"101" = "salse"\n',
        "[extensions] 101 names unknown connection 'salse' (configured: demo, sales)",
    ),
    (
        CONNECTIONS.replace("outbound_pop = true", 'outbound_pop = true\nrate_limit = "0/60"'),
        "connection 'sales': rate_limit '0/60' is impossible",
    ),
    (
        CONNECTIONS.replace("outbound_pop = true", 'outbound_pop = true\nrate_limit = "5/0"'),
        "connection 'sales': rate_limit '5/0' is impossible",
    ),
    # Found trying the product as a newcomer: each of these was accepted at start-up and
    # then failed every lookup (a refused number, a retried "CRM could not be reached").
    (
        CONNECTIONS.replace('region = "US"', 'region = "USA"'),
        "connection 'demo': region 'USA' is not a region code; did you mean 'US'?",
    ),
    (
        CONNECTIONS + '\n[connections.clio]\ncrm = "clio"\nbase_url = "https://app.clio.com"\n',
        "connection 'clio': crm clio needs token_env",
    ),
    (
        CONNECTIONS + '\n[connections.clio]\ncrm = "clio"\ntoken_env = "CLIO_TOKEN"\n',
        "connection 'clio': crm clio needs base_url",
    ),
    (
        CONNECTIONS
        + '\n[connections.clio]\ncrm = "clio"\nbase_url = "app.clio.com"\n'
        + 'token_env = "CLIO_TOKEN"\n',
        "connection 'clio': base_url 'app.clio.com' must start with https:// (or http://)",
    ),
]


def args_for(command: list[str], tmp_path: Path) -> list[str]:
    (tmp_path / "events.jsonl").write_text("")
    (tmp_path / "numbers.txt").write_text("+14155550100\n")
    names = {"EVENTS": "events.jsonl", "NUMBERS": "numbers.txt"}
    return [str(tmp_path / names[a]) if a in names else a for a in command]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_every_command_refuses_a_bad_connections_file_at_start(
    env: Path, tmp_path: Path, capsys: Capsys, text: str, message: str
) -> None:
    env.write_text(text)
    for command in COMMANDS:
        capsys.readouterr()
        assert main(args_for(command, tmp_path)) == 2, command
        err = capsys.readouterr().err
        assert message in err, (command, err)
        assert err.count("\n") == 1, command  # one line, no traceback


@pytest.mark.parametrize("text", [t for t, _ in BAD_FILES])
def test_connection_file_errors_name_the_file(
    env: Path, capsys: Capsys, tmp_path: Path, text: str
) -> None:
    env.write_text(text)
    assert main(args_for(COMMANDS[0], tmp_path)) == 2
    assert f"connections file '{env}': " in capsys.readouterr().err


def start(command: list[str], pr_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "REDIS_URL": pr_url, **env}
    for name in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL", "STATE_URL"):
        full.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *command],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def worker_start(tmp_path: Path, pr_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return start(["worker", "-Q", "i12-never"], pr_url, **env)


def test_the_worker_refuses_a_bad_file_or_setting_before_it_starts(
    pr_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, 'default = "demo"\n')
    config.write_text(config.read_text().replace("extension_lookup", "extention_lookup", 1))
    done = worker_start(tmp_path, pr_url, CONTACT_LOOKUP_CONFIG=str(config))
    assert done.returncode != 0
    assert "did you mean 'extension_lookup'?" in done.stderr
    assert "Traceback" not in done.stderr

    good = write_config(tmp_path, 'default = "demo"\n')
    done = worker_start(tmp_path, pr_url, CONTACT_LOOKUP_CONFIG=str(good), VISIBILITY_TIMEOUT="10")
    assert done.returncode != 0
    assert "VISIBILITY_TIMEOUT=10 must be above RETRY_MAX_DELAY=120 s" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_worker_refuses_an_unknown_option_in_one_line(pr_url: str, tmp_path: Path) -> None:
    """Celery's option parser runs with click's standalone mode off: an unknown option was
    click's NoSuchOption traceback (exit 1) instead of its one-line usage error."""
    good = write_config(tmp_path, 'default = "demo"\n')
    done = start(["worker", "--bogus-opt"], pr_url, CONTACT_LOOKUP_CONFIG=str(good))
    assert done.returncode == 2
    assert done.stderr == "contact-lookup worker: No such option '--bogus-opt'.\n", done.stderr


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_the_webhook_refuses_a_port_out_of_range(pr_url: str, tmp_path: Path, port: str) -> None:
    """`--port 99999` reached gunicorn's bind(): an OverflowError traceback."""
    good = write_config(tmp_path, 'default = "demo"\n')
    done = start(["webhook", "--port", port], pr_url, CONTACT_LOOKUP_CONFIG=str(good))
    assert done.returncode == 2
    assert f"argument --port: {port} is not a TCP port (1-65535)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_webhook_refuses_a_bad_file_before_it_serves(pr_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'default = "demo"\n')
    config.write_text(config.read_text() + '\n[extentions]\ndefault = "demo"\n')
    done = start(["webhook", "--port", str(free_port())], pr_url, CONTACT_LOOKUP_CONFIG=str(config))
    assert done.returncode == 2
    assert "unknown key 'extentions'; did you mean 'extensions'?" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_lookup_refuses_a_timeout_that_cannot_wait(env: Path, capsys: Capsys, timeout: str) -> None:
    """`--timeout 0` (or -1) was taken, and the answer blamed the workers: "No worker answered
    within -1 s. Is a worker consuming the 'call_pop' queue?"."""
    args = ["lookup", "+14155550100", "--connection", "demo", "--timeout", timeout]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == "contact-lookup: --timeout must be a number of seconds above 0\n", err


@pytest.mark.parametrize("option", ["--workers", "--threads"])
@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_the_webhook_refuses_fewer_than_one_worker_or_thread(
    capsys: Capsys, option: str, value: str
) -> None:
    """`webhook --workers 0` was accepted and handed to gunicorn."""
    from producers.cli.parser import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["webhook", option, value])
    assert exited.value.code == 2
    assert f"argument {option}: {value} is not a count of at least 1" in capsys.readouterr().err
