"""prometheus_client's multiprocess mode for the commands that serve metrics.

prometheus_client decides at its first import whether values live in memory or in
memory-mapped files under ``PROMETHEUS_MULTIPROC_DIR`` ("Multiprocess Mode",
https://prometheus.github.io/client_python/multiprocess/). ``contact-lookup webhook``
(gunicorn processes) and ``contact-lookup worker --metrics-port`` (prefork children) call
``use_multiprocess_dir`` before anything imports it. An operator's own directory is used as
given; otherwise a fresh private one is made and removed when the command exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile


def use_multiprocess_dir() -> str:
    """The directory in use; RuntimeError when prometheus_client was imported too early."""
    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise RuntimeError("prometheus_client was imported before its multiprocess directory")
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if path:
        os.makedirs(path, exist_ok=True)
        return path
    path = tempfile.mkdtemp(prefix="contact-lookup-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    owner = os.getpid()

    def cleanup() -> None:
        if os.getpid() == owner:  # not in a forked child that runs atexit
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(cleanup)
    return path
