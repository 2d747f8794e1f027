"""``contact-lookup connectors try`` and ``connectors list`` through the public command, on a
shipped REST template (examples/rest/capsule.toml, the whole file as an operator would use it)
against its simulator over HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from contact_lookup.testing.contract import SECRET, SEED
from crmsim.capsule import CapsuleSimulator
from producers.cli import main
from tests.conftest import EXAMPLES

ADA = "+14155550100"  # stored only as "(415) 555-0100"


@pytest.fixture
def capsule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CapsuleSimulator]:
    sim = CapsuleSimulator(SEED, token=SECRET)
    sim.start()
    text = (EXAMPLES / "rest" / "capsule.toml").read_text()
    text = re.sub(r"(?m)^base_url = .*$", f'base_url = "{sim.url}"', text)
    (tmp_path / "cl.toml").write_text(text)
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(tmp_path / "cl.toml"))
    monkeypatch.setenv("CAPSULE_TOKEN", SECRET)
    yield sim
    sim.stop()


def test_try_prints_each_request_masked_the_raw_answer_and_the_contacts(
    capsule: CapsuleSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["connectors", "try", "capsule", ADA]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    # The template's formats give three queries: E.164, then the two US formats.
    assert capsule.queries == [ADA, "(415) 555-0100", "415-555-0100"]
    assert '"Authorization": "***"' in out  # masked, then redacted as credential-shaped
    assert "/api/v2/parties/search?q=%28415%29%20555-0100&perPage=100" in out
    assert out.count("answer ") == 3 and '"firstName": "Ada"' in out
    contacts = json.loads(out.split("contacts: ", 1)[1].split("\nrate limit:", 1)[0])
    assert [(c["name"], c["phone"], c["createdDate"]) for c in contacts] == [
        ("Ada Lovelace", "(415) 555-0100", "2021-03-04T10:00:00Z")
    ]


def test_try_shows_the_failure_and_the_answer_that_caused_it(
    capsule: CapsuleSimulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSULE_TOKEN", "wrong-" + SECRET)
    assert main(["connectors", "try", "capsule", ADA]) == 1
    captured = capsys.readouterr()
    assert "answer 1 (HTTP 401)" in captured.out and "Authentication failed" in captured.out
    assert "AuthRejected" in captured.err
    assert SECRET not in captured.out + captured.err


def test_an_invalid_template_fails_at_load_naming_key_and_expression(
    capsule: CapsuleSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "cl.toml"
    path.write_text(path.read_text().replace('title = "jobTitle"', 'title = "jobTitle["'))
    assert main(["connectors", "try", "capsule", ADA]) == 2
    err = capsys.readouterr().err
    assert "[connections.capsule.response] title: invalid JMESPath expression 'jobTitle['" in err
    assert capsule.requests == 0


def test_list_shows_rest_and_its_template_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connectors", "list"]) == 0
    out = capsys.readouterr().out
    rest = next(line for line in out.splitlines() if line.startswith("rest "))
    assert "built-in" in rest and "contact_lookup.connectors.rest:RestConnector" in rest
    assert "    response = table:" in out


def test_try_a_python_connector_prints_its_trace_and_contacts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(EXAMPLES / "contact-lookup.toml"))
    assert main(["connectors", "try", "demo", "4155550100"]) == 0
    out = capsys.readouterr().out
    requests = json.loads(out.split("requests: ", 1)[1].split("\ncontacts:", 1)[0])
    assert [r["url"].rsplit("?phone=", 1)[1] for r in requests] == [
        "+14155550100",
        "(415) 555-0100",
        "415-555-0100",
    ]
    contacts = json.loads(out.split("contacts: ", 1)[1])
    assert [c["id"] for c in contacts] == ["c-1001"]


def test_try_refuses_a_number_that_is_not_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(EXAMPLES / "contact-lookup.toml"))
    assert main(["connectors", "try", "demo", "not-a-number"]) == 2
    assert "'not-a-number' is not a valid phone number" in capsys.readouterr().err
