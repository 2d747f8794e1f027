"""A real ``contact-lookup worker --pool prefork -c 2 --metrics-port``: the scraped counters
sum over every child process, those that already exited included, and the metrics
directory keeps no file of a dead child (contact_lookup.metrics.compact_dead).

``--max-tasks-per-child 2`` makes children exit and be replaced while the lookups run, the
way a long-lived prefork worker recycles them: 8 lookups are served by at least 4 children.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tasks.celery_app import create_app
from tests.conftest import settings_for
from tests.fakecrm import wait_for
from tests.operations.conftest import command, sample, scrape, start_on_free_port
from tests.processes import Proc, base_env

NUMBERS = [f"+1415555{n:04d}" for n in range(200, 208)]  # none cached, none coalesced


def pid_files(path: Path) -> dict[str, int]:
    """Metric files named after a process: {file name: pid}."""
    out = {}
    for name in os.listdir(path):
        match = re.fullmatch(r"(?:counter|histogram|gauge_[a-z]+)_(\d+)\.db", name)
        if match:
            out[name] = int(match.group(1))
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_prefork_children_sum_and_dead_children_leave_no_files(
    ops_url: str, connections: Path, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "prom"
    env = base_env(
        REDIS_URL=ops_url,
        CONTACT_LOOKUP_CONFIG=str(connections),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )

    def make(port: int) -> Proc:
        args = ["--pool", "prefork", "-c", "2", "--max-tasks-per-child", "2"]
        args += ["--metrics-port", f"127.0.0.1:{port}", "-Q", "call_log", "-n", f"pf-{port}@%h"]
        args += ["--without-mingle", "--without-gossip"]
        return Proc(command("worker", *args), env, tmp_path, f"prefork-{port}")

    app = create_app(settings_for(ops_url, connections))
    worker: Proc | None = None
    try:
        worker, port = start_on_free_port(make)
        sent = [
            app.send_task(
                "find_contact",
                kwargs={"connection": "demo", "phoneNumber": number, "purpose": "call_log"},
            )
            for number in NUMBERS
        ]
        results = [p.get(timeout=60) for p in sent]
        assert all(r["successful"] for r in results)
        url = f"http://127.0.0.1:{port}/metrics"

        def settled() -> dict[str, float]:
            """The scrape once every child that served 2 lookups has exited and been folded."""
            m = scrape(url)
            files = pid_files(metrics_dir)
            dead = [name for name, pid in files.items() if not alive(pid)]
            archived = (metrics_dir / "counter_archive.db").exists()
            return m if archived and not dead else {}

        assert wait_for(lambda: bool(settled()), 20), os.listdir(metrics_dir)
        m = settled() or scrape(url)
        files = pid_files(metrics_dir)
        dead = [name for name, pid in files.items() if not alive(pid)]
    finally:
        app.close()
        if worker is not None:
            worker.stop()
    lookups = "contact_lookup_lookups_total"
    assert sample(m, lookups, purpose="call_log", connection="demo") == len(NUMBERS)
    # Children ran and exited (each serves at most 2): the live ones hold files, the parent
    # maybe; never more than 3 processes' worth, whatever the number of children so far.
    assert len({pid for pid in files.values()}) <= 3, files
    assert not dead, dead
    assert (metrics_dir / "counter_archive.db").exists()  # the exited children's counts
