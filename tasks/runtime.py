"""One lookup runtime (Redis clients, config, connectors) per worker process and app."""

from __future__ import annotations

import threading
from typing import Any

from contact_lookup.compose import Runtime

_LOCK = threading.Lock()


def runtime_for(app: Any) -> Runtime:
    """The app's Runtime, built on first use from the settings the app was created with."""
    runtime: Runtime | None = getattr(app, "_lookup_runtime", None)
    if runtime is None:
        with _LOCK:
            runtime = getattr(app, "_lookup_runtime", None)
            if runtime is None:
                runtime = Runtime(app.settings)
                app._lookup_runtime = runtime
    return runtime
