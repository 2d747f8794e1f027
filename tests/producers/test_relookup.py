"""``contact-lookup relookup`` and ``replay --wait`` against a real in-process worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from producers.cli import main
from tasks.celery_app import QUEUES, ContactLookupCelery
from tests.producers.conftest import fixture, queued, replay

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def worker(env: Path, celery_app: ContactLookupCelery) -> Iterator[ContactLookupCelery]:
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=list(QUEUES),
        shutdown_timeout=10,
    ):
        yield celery_app


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_line(out: str) -> list[dict[str, Any]]:
    """Result lines come in completion order; sorted by input line here."""
    return sorted((json.loads(x) for x in out.splitlines()), key=lambda r: r["line"])


def ids(result: dict[str, Any]) -> list[str]:
    return [c["id"] for c in result["matchedContactInfo"] if c["id"] != "createNewContact"]


NUMBERS = """+14155550100
(415) 555-0100
415-555-0199

hello
+14155550188
+14155550123
12
"""


def test_relookup_writes_one_line_per_row_and_looks_up_each_number_once(
    worker: ContactLookupCelery, tmp_path: Path, capsys: Capsys
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text(NUMBERS)
    out = tmp_path / "results.jsonl"
    code = main(["relookup", str(source), "--connection", "demo", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0
    written = results(out)
    lines = {r["line"]: r for r in written}
    assert len(written) == len(lines) == 8 and sorted(lines) == list(range(1, 9))  # every row
    assert lines[2] == {"line": 2, "phoneNumber": "+14155550100", "duplicateOf": 1}
    assert lines[4] == {"line": 4, "phoneNumber": "", "skipped": "blank"}
    assert lines[1]["phoneNumber"] == "+14155550100" and ids(lines[1]["result"]) == ["c-1001"]
    assert ids(lines[3]["result"]) == ["c-1002"]  # 415-555-0199 is one of Grace's phones
    assert ids(lines[7]["result"]) == ["c-1002", "c-1003", "c-1004"]
    assert lines[6]["result"]["successful"] and ids(lines[6]["result"]) == []
    for bad, raw in ((5, "hello"), (8, "12")):
        assert lines[bad]["phoneNumber"] == raw and not lines[bad]["result"]["successful"]
        assert lines[bad]["result"]["extraDataTracking"]["errorType"] == "InvalidPhoneNumber"
    assert (
        "6 numbers: 3 matched, 1 not found, 0 failed, 2 invalid; 0 from cache; "
        "1 repeated numbers looked up once; 1 blank or comment rows"
    ) in err
    assert "every row done" in err
    assert "relookup: 4 numbers to look up" in err  # the estimate (json: no rate limit)
    assert "no rate limit" in err

    # re-running with the same --out resumes: only the new row is done; the summary
    # covers the whole file
    source.write_text(NUMBERS + "+442079460958\n+14155550188\n")
    code = main(["relookup", str(source), "--connection", "demo", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0
    again = results(out)
    assert len(again) == 10 and again[8]["line"] in (9, 10)
    by = {r["line"]: r for r in again}
    assert ids(by[9]["result"]) == ["c-1007"]
    assert by[10] == {"line": 10, "phoneNumber": "+14155550188", "duplicateOf": 6}
    assert "(this run): 1 numbers: 1 matched" in err and "8 already in the results" in err
    assert f"relookup ({out}): 7 numbers: 4 matched, 1 not found, 0 failed, 2 invalid" in err


def test_relookup_answers_from_the_cache_unless_refresh(
    worker: ContactLookupCelery, tmp_path: Path, capsys: Capsys, client: redis.Redis
) -> None:
    source = tmp_path / "numbers.csv"
    # Excel's "CSV UTF-8": a BOM before the header, CRLF line ends, quoted fields
    source.write_bytes(
        b'\xef\xbb\xbfname,phoneNumber\r\n"Lovelace, Ada",+14155550100\r\nTuring,+14155550123\r\n'
    )
    assert main(["relookup", str(source), "--connection", "demo"]) == 0
    first = by_line(capsys.readouterr().out)
    assert [(r["line"], r["phoneNumber"]) for r in first] == [
        (2, "+14155550100"),
        (3, "+14155550123"),
    ]
    assert not any(r["result"]["extraDataTracking"].get("isCached") for r in first)

    assert main(["relookup", str(source), "--connection", "demo"]) == 0
    captured = capsys.readouterr()
    second = by_line(captured.out)
    assert all(r["result"]["extraDataTracking"] == {"isCached": True} for r in second)
    assert "2 matched, 0 not found, 0 failed, 0 invalid; 2 from cache" in captured.err

    assert main(["relookup", str(source), "--connection", "demo", "--refresh"]) == 0
    third = by_line(capsys.readouterr().out)
    assert not any(r["result"]["extraDataTracking"].get("isCached") for r in third)
    assert [ids(r["result"]) for r in third] == [ids(r["result"]) for r in first]


def test_relookup_keeps_a_bounded_window_and_stops_when_no_worker_answers(
    env: Path, tmp_path: Path, capsys: Capsys, client: redis.Redis
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("".join(f"+1415555010{i}\n" for i in range(6)))
    out = tmp_path / "out.jsonl"
    code = main(
        [
            "relookup",
            str(source),
            "--connection",
            "demo",
            "--refresh",
            "--window",
            "2",
            "--timeout",
            "1",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "Is a worker consuming the 'relookup' queue?" in err
    assert len(queued(client, "relookup")) == 2  # never more than the window outstanding
    assert not out.exists() or out.read_text() == ""
    assert "2 queued jobs revoked" in err and "6 rows still to do" in err
    assert f"resume with: contact-lookup relookup {source} --connection demo" in err


def test_relookup_usage_errors(env: Path, tmp_path: Path, capsys: Capsys) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("name,email\nAda,ada@example.com\n")
    out = tmp_path / "results.jsonl"
    out.write_text('{"line": 1, "phoneNumber": "+14155550100", "result": {}}\n')
    before = out.read_bytes()
    assert main(["relookup", str(csv_file), "--connection", "demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{csv_file} line 1: no phone number column in the header ('name', 'email')" in err
    assert out.read_bytes() == before  # nothing already written is lost
    assert main(["relookup", str(csv_file), "--connection", "demo", "--column", "tel"]) == 2
    assert "no column 'tel' in the header" in capsys.readouterr().err
    assert main(["relookup", str(csv_file), "--connection", "nope"]) == 2
    assert "unknown connection 'nope'" in capsys.readouterr().err
    assert main(["relookup", str(tmp_path / "missing.txt"), "--connection", "demo"]) == 2


def test_replay_wait_prints_results_and_later_calls_come_from_the_cache(
    worker: ContactLookupCelery, tmp_path: Path, capsys: Capsys, client: redis.Redis
) -> None:
    ring = fixture("inbound_ringing")
    later_call = {
        **ring,
        "uuid": "second-call",
        "body": {**ring["body"], "telephonySessionId": "s-second-call"},
    }
    code, lines = replay(
        capsys,
        tmp_path,
        [ring, fixture("internal_call"), later_call, fixture("answered")],
        "--wait",
    )
    assert code == 0
    assert [x["action"] for x in lines] == [
        "enqueued",
        "enqueued",
        "answered-from-cache",
        "skipped",
    ]
    assert ids(lines[0]["result"]) == ["c-1001"]
    assert ids(lines[1]["result"]) == ["c-1008"]  # extension 102: the reception desk
    assert ids(lines[2]["result"]) == ["c-1001"]
    assert lines[2]["result"]["extraDataTracking"] == {"isCached": True}
    assert "result" not in lines[3]


def test_replay_wait_without_a_worker_times_out_once(
    env: Path, tmp_path: Path, capsys: Capsys
) -> None:
    code, lines = replay(
        capsys,
        tmp_path,
        [fixture("inbound_ringing"), fixture("sms_inbound")],
        "--wait",
        "--timeout",
        "0.5",
    )
    assert code == 0
    messages = [x["result"]["returnMessage"]["message"] for x in lines]
    assert "No worker answered within 0.5 s" in messages[0]
    assert messages[1].startswith("Not waited for")


def test_the_estimate_counts_the_most_searches_a_number_takes(env: Path) -> None:
    """It counted the last number's searches: a file ending in a Mexican mobile (one search,
    the formats do not fit it) said "at most 3 CRM requests (1 per number)" for numbers
    that take E.164 + 2 formats each."""
    from contact_lookup.compose import Runtime
    from contact_lookup.settings import Settings
    from producers.relookup import _to_look_up

    service = Runtime(Settings.from_env()).service
    rows = [(1, "+14155550100", "number"), (2, "+14155550123", "number")]
    rows.append((3, "+5215555550142", "number"))
    assert _to_look_up(service, "demo", rows, {}) == (3, 3)
