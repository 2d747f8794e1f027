"""Where a worker process spends its Python time: py-spy attached to a running worker.

cProfile cannot see inside a Celery worker (it profiles one thread of the process it runs in);
py-spy (github.com/benfred/py-spy) samples another process's stacks from outside. With
``--gil`` it samples only the thread holding the GIL, so the samples are the worker's Python
time: on a threads pool that is the worker's limit, one core's worth of Python at a time.

``WorkerProfile`` runs ``py-spy record --pid P --gil -f raw`` for a fixed duration beside a
benchmark's run and answers, per named part (a frame that must be on the stack), its share of
the samples. Attaching needs ptrace rights (root, or ``kernel.yama.ptrace_scope = 0``); where
py-spy is missing or cannot attach, ``result`` says why and the benchmark reports that.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

# A part of the worker: a sample is in it when any of its alternatives is on the sample's
# stack, an alternative being frames (path suffix, function qualname) that must all be there.
Frame = tuple[str, str]
Part = Sequence[Sequence[Frame]]

LOOKUP: Frame = ("contact_lookup/core/service.py", "LookupService.lookup")
HTTP: Frame = ("requests/sessions.py", "Session.request")
REDIS: Part = [
    [LOOKUP, ("redis/client.py", "Redis.execute_command")],
    [LOOKUP, ("redis/client.py", "Pipeline.execute")],
]
REST_OF_LOOKUP = "the rest of the lookup (rules, connector, phone parsing, threads)"

# The parts a lookup worker's Python time is read in (benchmark 11's notes). The lookup's
# own three parts do not overlap; the parts outside the lookup do not nest in it.
WORKER_PARTS: Mapping[str, Part] = {
    "the HTTP client (requests)": [[HTTP]],
    "the lookup's Redis calls (cache read, two scripts)": REDIS,
    REST_OF_LOOKUP: [],  # the lookup's samples in neither of the two above
    "result backend writes (STARTED, SUCCESS)": [
        [("celery/backends/base.py", "Backend.store_result")]
    ],
    "task events (for Flower)": [
        [("celery/events/dispatcher.py", "EventDispatcher.send")],
        [("celery/events/dispatcher.py", "EventDispatcher.flush")],
    ],
    "broker: receive and ack": [
        [("kombu/transport/redis.py", "Transport.on_readable")],
        [("kombu/message.py", "Message.ack")],
    ],
}

_FRAME = re.compile(r"^(?P<func>.+) \((?P<path>[^()]*?)(?::\d+)?\)$")


def parse_raw(text: str) -> list[tuple[list[Frame], int]]:
    """py-spy's ``-f raw`` output (collapsed stacks, ``frame;frame;... count``) as
    [([(path, function), ...], count)]."""
    stacks: list[tuple[list[Frame], int]] = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames: list[Frame] = []
        for frame in stack.split(";"):
            m = _FRAME.match(frame.strip())
            if m:
                frames.append((m["path"].replace("\\", "/"), m["func"]))
        stacks.append((frames, int(count)))
    return stacks


def _on_stack(frames: Sequence[Frame], part: Part) -> bool:
    def has(want: Frame) -> bool:
        return any(path.endswith(want[0]) and func == want[1] for path, func in frames)

    return any(all(has(want) for want in alternative) for alternative in part)


def shares_of(
    stacks: Sequence[tuple[list[Frame], int]], parts: Mapping[str, Part]
) -> dict[str, float]:
    """Each part's share (0-1) of all samples. A part with no alternatives takes the
    lookup's samples that no other part with the lookup on its stack took (the remainder)."""
    total = sum(n for _, n in stacks) or 1
    out = {label: 0.0 for label in parts}
    for frames, n in stacks:
        in_lookup = _on_stack(frames, [[LOOKUP]])
        taken = False
        for label, part in parts.items():
            if part and _on_stack(frames, part):
                out[label] += n / total
                taken = taken or in_lookup
        if in_lookup and not taken:
            for label, part in parts.items():
                if not part:
                    out[label] += n / total
    return out


class WorkerProfile:
    """``py-spy record`` on ``pid`` for ``seconds``; ``start()`` then ``result()``."""

    def __init__(self, pid: int, seconds: float, rate_hz: int = 250) -> None:
        self.pid, self.seconds, self.rate_hz = pid, seconds, rate_hz
        self.out = Path(tempfile.mkdtemp(prefix="bench-spy-")) / "stacks.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    def start(self) -> WorkerProfile:
        # The venv's own py-spy first: `make bench` runs .venv/bin/python without the venv
        # on PATH.
        beside = Path(sys.executable).parent / "py-spy"
        exe = str(beside) if beside.exists() else shutil.which("py-spy")
        if exe is None:
            self.error = "py-spy is not installed (pip install py-spy)"
            return self
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(self.pid), "--gil", "--nonblocking",
             "-r", str(self.rate_hz), "-d", str(max(1, round(self.seconds))),
             "-f", "raw", "-o", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        return self

    def result(self, parts: Mapping[str, Part] = WORKER_PARTS) -> tuple[dict[str, float], int]:
        """({part: share of samples}, samples), or raises RuntimeError saying why not."""
        if self.proc is None:
            raise RuntimeError(self.error or "not started")
        try:
            _, err = self.proc.communicate(timeout=self.seconds + 30)
            if self.proc.returncode != 0 or not self.out.exists():
                tail = (err or b"").decode(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"py-spy could not sample the worker ({' '.join(tail)})")
            stacks = parse_raw(self.out.read_text(encoding="utf-8", errors="replace"))
        finally:
            shutil.rmtree(self.out.parent, ignore_errors=True)
        return shares_of(stacks, parts), sum(n for _, n in stacks)
