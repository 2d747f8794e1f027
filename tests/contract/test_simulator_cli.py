"""`python -m crmsim CRM`: what it prints is enough to use the simulator (README, "Try a
connector without a CRM account")."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def first_lines(*args: str, count: int) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "crmsim", *args, "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        return [proc.stdout.readline().rstrip("\n") for _ in range(count)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_default_token_is_printed_so_a_newcomer_can_export_it() -> None:
    """It printed `export CRMSIM_CLIO_TOKEN=<the --token value>` with no --token given, and
    the default (`sim-token`) was nowhere in the output or in --help."""
    lines = first_lines("clio", count=5)
    assert "  export CRMSIM_CLIO_TOKEN=sim-token" in lines, lines


def test_a_token_given_on_the_command_line_is_not_echoed() -> None:
    lines = first_lines("clio", "--token", "s3cret-given", count=5)
    assert not [line for line in lines if "s3cret-given" in line], lines
    assert "  export CRMSIM_CLIO_TOKEN=<the --token value>" in lines, lines
