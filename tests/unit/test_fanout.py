"""fan_out (contact_lookup/connectors/fanout.py): order, the concurrency bound, all-or-nothing.

Real threads, synchronised with barriers and events (never sleeps): a barrier of N parties
only opens when N calls are in flight together, so it proves concurrency, and a call that
would exceed the bound shows in the in-flight counter before it waits.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from contact_lookup.connectors.fanout import fan_out
from contact_lookup.model.config import parse_config
from contact_lookup.model.errors import ConfigError

TIMEOUT_S = 10.0


class InFlight:
    """Counts calls in flight and the most seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.started: list[int] = []

    def __enter__(self) -> InFlight:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def test_results_come_back_in_input_order_whatever_order_calls_finish() -> None:
    n = 5
    finished: list[int] = []
    turns = [threading.Event() for _ in range(n)]

    def call(i: int) -> Callable[[], int]:
        def run() -> int:
            # The last call finishes first, then each releases the one before it.
            assert turns[i].wait(TIMEOUT_S)
            finished.append(i)
            if i > 0:
                turns[i - 1].set()
            return i * 10

        return run

    turns[-1].set()
    assert fan_out([call(i) for i in range(n)], max_concurrency=n) == [0, 10, 20, 30, 40]
    assert finished == [4, 3, 2, 1, 0]


def test_never_more_than_max_concurrency_in_flight() -> None:
    counter = InFlight()
    together = threading.Barrier(3, timeout=TIMEOUT_S)

    def run() -> str:
        with counter:
            together.wait()  # opens only when 3 are in flight: the bound is reached
            return "ok"

    assert fan_out([run] * 9, max_concurrency=3) == ["ok"] * 9
    assert counter.most == 3


def test_a_shared_gate_bounds_several_fan_outs_together() -> None:
    counter = InFlight()
    gate = threading.Semaphore(2)
    pairs = threading.Barrier(2, timeout=TIMEOUT_S)

    def run() -> int:
        with counter:
            pairs.wait()
            return 1

    results: list[list[int]] = []

    def lookup() -> None:
        results.append(fan_out([run] * 4, max_concurrency=4, gate=gate))

    threads = [threading.Thread(target=lookup) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S)
    assert results == [[1] * 4, [1] * 4]
    assert counter.most == 2  # 2 lookups x 4 calls, never more than the gate's 2


def test_a_failure_stops_new_calls_waits_for_those_in_flight_and_is_raised() -> None:
    started: list[int] = []
    finished: list[int] = []
    release = threading.Event()

    def call(i: int) -> Callable[[], int]:
        def run() -> int:
            started.append(i)
            if i == 0:
                assert release.wait(TIMEOUT_S)  # still in flight when call 1 fails
                finished.append(i)
                return 0
            release.set()
            raise RuntimeError(f"call {i} failed")

        return run

    with pytest.raises(RuntimeError, match="call 1 failed"):
        fan_out([call(i) for i in range(6)], max_concurrency=2)
    assert sorted(started) == [0, 1]  # calls 2-5 were never sent
    assert finished == [0]  # the call in flight was waited for, not orphaned


def test_the_earliest_failure_in_input_order_is_raised() -> None:
    both = threading.Barrier(2, timeout=TIMEOUT_S)

    def fail(name: str) -> Callable[[], int]:
        def run() -> int:
            both.wait()
            raise ValueError(name)

        return run

    for _ in range(5):  # whichever finishes first, the earlier call's error is raised
        with pytest.raises(ValueError, match="first"):
            fan_out([fail("first"), fail("second")], max_concurrency=2)
        both.reset()


LOOKUP_ID: contextvars.ContextVar[str] = contextvars.ContextVar("LOOKUP_ID", default="unset")


def test_every_call_sees_the_callers_context() -> None:
    together = threading.Barrier(3, timeout=TIMEOUT_S)

    def run() -> tuple[str, int]:
        together.wait()  # three pool threads at once, none of them the caller
        return LOOKUP_ID.get(), threading.get_ident()

    LOOKUP_ID.set("lookup-7")
    try:
        results = fan_out([run] * 3, max_concurrency=3)
    finally:
        LOOKUP_ID.set("unset")
    assert [value for value, _ in results] == ["lookup-7"] * 3
    assert threading.get_ident() not in {ident for _, ident in results}


def test_one_call_runs_on_the_callers_thread() -> None:
    caller = threading.get_ident()
    assert fan_out([threading.get_ident], max_concurrency=8) == [caller]
    assert fan_out([threading.get_ident] * 3, max_concurrency=1) == [caller] * 3


def test_max_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fan_out([lambda: 1], max_concurrency=0)


@pytest.mark.parametrize("value", [0, 65, -1, 2.5, "4", True])
def test_max_concurrency_in_the_connections_file_is_validated(value: object) -> None:
    table = {"crm": "clio", "max_concurrency": value}
    with pytest.raises(ConfigError, match="max_concurrency must be a whole number from 1 to 64"):
        parse_config({"connections": {"c": table}}, base_dir=Path("."))


def test_max_concurrency_is_a_common_key_not_a_connector_option() -> None:
    config = parse_config(
        {"connections": {"c": {"crm": "clio", "max_concurrency": 3}}},
        base_dir=Path("."),
    )
    conn = config.connection("c")
    assert conn.max_concurrency == 3 and "max_concurrency" not in conn.options
