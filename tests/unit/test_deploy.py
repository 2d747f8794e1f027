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
ENV = {
    "REDIS_PASSWORD": "pw",
    "FLOWER_USER": "u",
    "FLOWER_PASSWORD": "p",
    "RC_VERIFICATION_TOKEN": "vt",
    "CONTACT_LOOKUP_CONFIG_DIR": "./examples",
}
APP_SERVICES = ("callpop-worker", "logging-worker", "webhook", "flower")


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
        "proxy",
    } <= set(SERVICES)


def test_every_command_names_a_real_entry_point() -> None:
    commands = cli_commands() | {"worker"}
    for name, service in SERVICES.items():
        assert "healthcheck" in service, f"{name} has no health check"
        if name == "proxy":
            continue  # the nginx image's own command
        cmd = service["command"]
        argv = cmd.split() if isinstance(cmd, str) else cmd
        if argv[0] == "contact-lookup":
            assert argv[1] in commands, f"{name}: unknown subcommand {argv[1]}"
        elif argv[0] == "celery":
            assert argv[1:3] == ["-A", "worker"] and argv[3] in ("worker", "flower"), name
        else:
            assert (argv[:2] == ["sh", "-c"] and argv[2].startswith("exec redis-server ")) or argv[
                0
            ] == "rabbitmq-server", name
        assert "healthcheck" in service, f"{name} has no health check"


def test_worker_queues_are_split_by_latency() -> None:
    pop = SERVICES["callpop-worker"]["command"]
    log = SERVICES["logging-worker"]["command"]
    assert pop[pop.index("-Q") + 1] == "call_pop"
    assert set(log[log.index("-Q") + 1].split(",")) == {"call_log", "message_log", "relookup"}


def test_redis_roles_and_protection() -> None:
    broker = " ".join(SERVICES["broker-redis"]["command"])
    cache = " ".join(SERVICES["cache-redis"]["command"])
    assert "--maxmemory-policy noeviction" in broker and "--appendonly yes" in broker
    assert "--maxmemory-policy allkeys-lru" in cache and "--maxmemory" in cache
    for name in ("broker-redis", "cache-redis"):
        # The password from the environment, quoted by the shell: never pasted into a URL.
        assert '--requirepass "$$REDIS_PASSWORD"' in " ".join(SERVICES[name]["command"])
        assert "ports" not in SERVICES[name], f"{name} must not be published to the host"


def test_state_lives_on_the_non_evicting_redis() -> None:
    env = SERVICES["webhook"]["environment"]
    assert env["STATE_URL"].startswith("redis://broker-redis:")  # noeviction, like the broker
    assert env["CACHE_URL"].startswith("redis://cache-redis:")


def test_rabbitmq_is_an_opt_in_profile() -> None:
    assert SERVICES["rabbitmq"]["profiles"] == ["rabbitmq"]
    assert SERVICES["webhook"]["environment"]["BROKER_URL"].startswith("${BROKER_URL:-redis://")


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


def test_only_the_proxy_is_published() -> None:
    published = {name for name, service in SERVICES.items() if "ports" in service}
    assert published == {"proxy"}


def test_no_secret_is_pasted_into_a_url() -> None:
    env = SERVICES["webhook"]["environment"]
    for name, value in env.items():
        if str(value).startswith(("redis://", "rediss://", "amqp://")):
            assert "@" not in value and "PASSWORD" not in value, name
    assert env["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")


def test_every_secret_and_the_config_dir_are_required() -> None:
    """``${VAR:?msg}`` makes compose refuse a variable that is unset *or empty*."""
    text = (ROOT / "docker-compose.yml").read_text()
    for var in (
        "REDIS_PASSWORD",
        "FLOWER_USER",
        "FLOWER_PASSWORD",
        "RC_VERIFICATION_TOKEN",
        "CONTACT_LOOKUP_CONFIG_DIR",
    ):
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses, var
        assert all(use.startswith(":?") for use in uses), (var, uses)


def test_metrics_are_behind_auth() -> None:
    for name in APP_SERVICES:
        assert "METRICS_BASIC_AUTH" in SERVICES[name]["environment"], name
    flower_site = (ROOT / "deploy" / "nginx" / "flower.conf.template").read_text()
    metrics = flower_site[flower_site.index("location = /metrics") :].split("}", 1)[0]
    assert "auth_basic " in metrics and "auth_basic_user_file" in metrics
    webhook_site = (ROOT / "deploy" / "nginx" / "webhook.conf.template").read_text()
    assert "location = /metrics" not in webhook_site and "return 404" in webhook_site


def test_every_service_rotates_its_logs() -> None:
    for name, service in SERVICES.items():
        options = service["logging"]["options"]
        assert service["logging"]["driver"] == "json-file", name
        assert options["max-size"] and int(options["max-file"]) >= 2, name


def test_the_image_installs_pinned_hashed_dependencies() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile  # the project itself, nothing resolved
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {
        line.split("==")[0].lower()
        for line in lock.splitlines()
        if line and not line.startswith((" ", "#"))
    }
    assert all("==" in line for line in lock.splitlines() if line and line[0].isalpha())
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = pyproject[pyproject.index("dependencies = [") :].split("]", 1)[0]
    for name in re.findall(r'"([A-Za-z0-9_.-]+)', deps):
        assert name.lower().replace("_", "-") in pinned, f"{name} is not in requirements.lock"


def test_env_example_placeholders_are_refused() -> None:
    from contact_lookup.model.errors import ConfigError
    from contact_lookup.settings import Settings

    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for var in ("REDIS_PASSWORD", "RC_VERIFICATION_TOKEN"):
        with pytest.raises(ConfigError, match=var):
            Settings.from_env({var: example[var]})


@pytest.mark.parametrize("var", ["REDIS_PASSWORD", "CONTACT_LOOKUP_CONFIG_DIR"])
def test_compose_refuses_an_empty_secret_or_config_dir(var: str) -> None:
    """Compose itself refuses (the `:?` form); every required variable uses it, as
    test_every_secret_and_the_config_dir_are_required checks without running Compose."""
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
            env={**ENV, var: "", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        if created:
            env_file.unlink()
    assert out.returncode != 0
    assert var in out.stderr


def test_the_sentinel_example_names_valid_sentinel_urls() -> None:
    from contact_lookup.redis_urls import parse_sentinel
    from contact_lookup.settings import with_password

    text = (ROOT / "examples" / "docker-compose.sentinel.yml").read_text()
    example = yaml.safe_load(text.replace("${REDIS_PASSWORD:?set REDIS_PASSWORD}", "pw"))
    env = example["services"]["webhook"]["environment"]
    for name in ("BROKER_URL", "RESULT_BACKEND", "STATE_URL"):
        assert parse_sentinel(env[name], name).password is None  # REDIS_PASSWORD goes alone
        # ... and the services insert it, percent-encoded, on the first part
        parsed = parse_sentinel(with_password(env[name], "p/w#@:"), name)
        assert parsed.master_name == "cl-master" and parsed.password == "p/w#@:"
        assert len(parsed.sentinels) == 3
    assert "--maxmemory-policy noeviction" in example["services"]["redis-replica"]["command"]
