"""bench/spy.py reads py-spy's collapsed stacks into shares of a worker's Python time; the
benchmark's explanation of a missed target rests on these shares, so they are held here."""

from __future__ import annotations

import pytest

from bench.spy import REST_OF_LOOKUP, WORKER_PARTS, parse_raw, shares_of

ROOT = "_worker (concurrent/futures/thread.py:83);trace_task (celery/app/trace.py:453)"
LOOK = ROOT + ";LookupService.lookup (contact_lookup/core/service.py:120)"
RAW = "\n".join(
    [
        LOOK + ";Session.request (requests/sessions.py:589);_make_request (urllib3/x.py:1) 4",
        LOOK + ";Guard._take (contact_lookup/core/guard.py:9);"
        "Redis.execute_command (redis/client.py:867) 2",
        LOOK + ";parse (phonenumbers/phonenumberutil.py:3000) 1",
        ROOT + ";Backend.store_result (celery/backends/base.py:170) 1",
        "Hub.create_loop (kombu/asynchronous/hub.py:362);"
        "EventDispatcher.flush (celery/events/dispatcher.py:240) 1",
        "Hub.create_loop (kombu/asynchronous/hub.py:362) 1",
        "not a stack line",
        "",
    ]
)


def test_raw_stacks_are_parsed_into_frames_and_counts() -> None:
    stacks = parse_raw(RAW)
    assert [n for _, n in stacks] == [4, 2, 1, 1, 1, 1]
    assert stacks[0][0][-2] == ("requests/sessions.py", "Session.request")
    assert stacks[-1][0] == [("kombu/asynchronous/hub.py", "Hub.create_loop")]


def test_each_sample_counts_in_its_part_and_the_lookup_remainder() -> None:
    shares = shares_of(parse_raw(RAW), WORKER_PARTS)
    assert shares["the HTTP client (requests)"] == pytest.approx(4 / 10)
    assert shares["the lookup's Redis calls (cache read, two scripts)"] == pytest.approx(2 / 10)
    assert shares[REST_OF_LOOKUP] == pytest.approx(1 / 10)  # phone parsing, in neither
    assert shares["result backend writes (STARTED, SUCCESS)"] == pytest.approx(1 / 10)
    assert shares["task events (for Flower)"] == pytest.approx(1 / 10)
    assert shares["broker: receive and ack"] == 0
    assert sum(shares.values()) == pytest.approx(9 / 10)  # the idle loop is in no part


def test_redis_calls_outside_the_lookup_are_not_the_lookups() -> None:
    raw = ROOT + ";Redis.execute_command (redis/client.py:867) 3"
    shares = shares_of(parse_raw(raw), WORKER_PARTS)
    assert shares["the lookup's Redis calls (cache read, two scripts)"] == 0
    assert shares[REST_OF_LOOKUP] == 0
