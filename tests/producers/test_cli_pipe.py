"""`contact-lookup … | head`: a reader that stops early is no error worth a traceback.

Found trying the product as a newcomer: `contact-lookup lookup … | head -3` printed a
BrokenPipeError traceback. Python's own advice (docs, "signal", note on SIGPIPE): point
stdout at devnull and leave quietly.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_a_closed_pipe_ends_the_command_without_a_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "producers.cli", "connectors", "list"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes its first line
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert err == "", err
