"""Subprocesses for tests: the one way a test starts a worker, Flower or any other process.

``Proc`` runs a command in its own session (a kill reaches its whole group), its output in
files; ``wait_until`` polls a readiness condition with a deadline. ``WorkerProcess`` is
``celery -A worker worker`` with a threads pool, ready when it logs ``<name> ready.``.
``base_env`` is the environment for a subprocess without anything that would redirect it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from tests.conftest import FOLLOW_REDIS_URL, ROOT
from tests.fakecrm import wait_for


def base_env(**overrides: str) -> dict[str, str]:
    """The environment for a subprocess: ours, without anything that would redirect it (on a
    RabbitMQ run, BROKER_URL stays: every worker uses the run's broker unless told otherwise)."""
    drop = ("REDIS_URL", *FOLLOW_REDIS_URL, "CONTACT_LOOKUP_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CRMSIM_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class Proc:
    """A subprocess in its own session (so a kill reaches its whole group), its stdout and
    stderr in files under ``log_dir``."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_dir: Path, name: str) -> None:
        self.args = args
        self.env = dict(env)
        self.name = name
        self.out_path = log_dir / f"{name}.stdout"
        self.err_path = log_dir / f"{name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> Proc:
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        return self

    def wait_until(self, ready: Callable[[], bool], timeout_s: float = 30.0) -> Proc:
        if not wait_for(lambda: not self.alive or ready(), timeout_s) or not self.alive:
            self.stop()
            raise AssertionError(f"{self.name} did not start:\n{self.logs()[-3000:]}")
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        text = ""
        for path in (self.out_path, self.err_path):
            if path.exists():
                text += path.read_text(encoding="utf-8", errors="replace")
        return text

    def log_lines(self) -> list[str]:
        return self.logs().splitlines()

    def kill(self) -> None:
        """SIGKILL to the whole process group: no shutdown, no acks, no goodbyes."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        # Children the process started may outlive it in its group; leave nothing behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> Proc:
        return self if self.proc is not None else self.launch()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess(Proc):
    """``celery -A worker worker --pool threads``, ready when it logs ``<name> ready.``"""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        name: str,
        *,
        queues: str = "call_log",
        concurrency: int = 8,
        extra: Iterable[str] = (),
    ) -> None:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "--pool",
            "threads",
            "-c",
            str(concurrency),
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "--loglevel",
            "INFO",
            "--without-mingle",
            *extra,
        ]
        super().__init__(args, env, log_dir, name)

    def wait_ready(self, timeout_s: float = 30.0) -> WorkerProcess:
        self.wait_until(lambda: " ready." in self.logs(), timeout_s)
        return self

    def start(self, timeout_s: float = 30.0) -> WorkerProcess:
        self.launch()
        return self.wait_ready(timeout_s)

    def __enter__(self) -> WorkerProcess:
        return self.start()
