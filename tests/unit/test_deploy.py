"""docker-compose.yml and the Dockerfile: every command names a real entry point, every
variable is documented, and the hardening rules hold. `docker-compose config` validates the
file offline too where Debian's docker-compose is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from contact_lookup import settings as settings_module
from producers.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
README = (ROOT / "README.md").read_text()
ENV = {"REDIS_PASSWORD": "pw", "FLOWER_USER": "u", "FLOWER_PASSWORD": "p"}


def cli_commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


def test_every_role_is_deployed() -> None:
    assert {
        "broker-redis",
        "cache-redis",
        "callpop-worker",
        "logging-worker",
        "webhook",
        "flower",
    } <= set(SERVICES)


def test_every_command_names_a_real_entry_point() -> None:
    commands = cli_commands() | {"worker"}
    for name, service in SERVICES.items():
        cmd = service["command"]
        argv = cmd.split() if isinstance(cmd, str) else cmd
        if argv[0] == "contact-lookup":
            assert argv[1] in commands, f"{name}: unknown subcommand {argv[1]}"
        elif argv[0] == "celery":
            assert argv[1:3] == ["-A", "worker"] and argv[3] in ("worker", "flower"), name
        else:
            assert argv[0] == "redis-server", name
        assert "healthcheck" in service, f"{name} has no health check"


def test_worker_queues_are_split_by_latency() -> None:
    pop = SERVICES["callpop-worker"]["command"]
    log = SERVICES["logging-worker"]["command"]
    assert pop[pop.index("-Q") + 1] == "call_pop"
    assert set(log[log.index("-Q") + 1].split(",")) == {"call_log", "message_log", "relookup"}


def test_redis_roles_and_protection() -> None:
    broker = SERVICES["broker-redis"]["command"]
    cache = SERVICES["cache-redis"]["command"]
    assert "--maxmemory-policy noeviction" in broker and "--appendonly yes" in broker
    assert "--maxmemory-policy allkeys-lru" in cache and "--maxmemory" in cache
    for name in ("broker-redis", "cache-redis"):
        assert "--requirepass" in SERVICES[name]["command"]
        assert "ports" not in SERVICES[name], f"{name} must not be published to the host"


def test_flower_requires_auth_from_the_environment() -> None:
    flower = SERVICES["flower"]
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    assert "basic-auth" not in " ".join(flower["command"])  # not visible in `ps`


def test_app_environment_is_known_and_every_variable_documented() -> None:
    source = Path(settings_module.__file__).read_text()
    app_env = SERVICES["webhook"]["environment"]
    for var in app_env:
        assert f'"{var}"' in source, f"{var} is not a setting"
    used = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    for var in used | set(app_env):
        assert f"`{var}`" in README, f"{var} is not documented in the README"


def test_dockerfile_runs_as_non_root() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    """Compose's own validation (Debian's docker-compose 1.29: schema, interpolation, merge).
    `.ci/run` installs it, so under CI this runs; on a laptop without it, it skips."""
    if shutil.which("docker-compose") is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing under CI (.ci/run installs it)")
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose)")
    env_file = ROOT / ".env"
    created = not env_file.exists()
    if created:
        env_file.write_text("")
    try:
        out = subprocess.run(
            ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
            env={**ENV, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        if created:
            env_file.unlink()
    assert out.returncode == 0, out.stderr
