"""contact_lookup.metrics.compact_dead on a real multiprocess directory: dead processes'
files are folded into one archive per type with their values kept (counters added,
``mostrecent`` gauges by timestamp), a live process's files are left alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from contact_lookup import metrics


def dead_pids(count: int) -> list[int]:
    """PIDs with no process behind them (checked, not assumed)."""
    out, pid = [], 4_000_000
    while len(out) < count:
        pid -= 1
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            out.append(pid)
        except PermissionError:
            pass
    return out


def write(path: Path, name: str, key: str, value: float, timestamp: float = 0.0) -> None:
    d = MmapedDict(str(path / name))
    d.write_value(key, value, timestamp)
    d.close()


def test_dead_processes_are_folded_and_their_values_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = mmap_key(
        "contact_lookup_lookups",
        "contact_lookup_lookups_total",
        ["purpose", "connection", "outcome"],
        ["call_log", "demo", "matched"],
        "Finished lookups by purpose, connection and outcome.",
    )
    budget = mmap_key(
        "contact_lookup_rate_budget_remaining",
        "contact_lookup_rate_budget_remaining",
        ["connection"],
        ["acme"],
        "Requests left.",
    )
    a, b = dead_pids(2)
    me = os.getpid()
    write(tmp_path, f"counter_{a}.db", lookups, 3)
    write(tmp_path, f"counter_{b}.db", lookups, 4)
    write(tmp_path, f"counter_{me}.db", lookups, 5)  # alive: stays
    write(tmp_path, f"gauge_mostrecent_{a}.db", budget, 7, timestamp=200.0)  # the newest
    write(tmp_path, f"gauge_mostrecent_{b}.db", budget, 9, timestamp=100.0)
    write(tmp_path, f"gauge_livesum_{a}.db", budget, 1)  # a live gauge of the dead: dropped
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = metrics.exposition().decode()
    names = {p.name for p in tmp_path.glob("*.db")}
    assert names == {"counter_archive.db", f"counter_{me}.db", "gauge_mostrecent_archive.db"}
    assert (
        'contact_lookup_lookups_total{connection="demo",outcome="matched",purpose="call_log"} 12.0'
        in text
    )
    assert 'contact_lookup_rate_budget_remaining{connection="acme"} 7.0' in text
    assert metrics.exposition().decode() == text  # folding again changes nothing
