"""A simulator known only by its URL, driven through the contract's control protocol.

The protocol (``crmsim/control.py`` documents it, and every ``crmsim`` simulator speaks it):
``POST /_contract/seed``, ``POST /_contract/fault``, ``POST /_contract/rate_limit``,
``POST /_contract/reset``, ``GET /_contract/state``. ``RemoteSimulator`` gives the contract
the same methods an in-process simulator object has (``inject``, ``set_rate_limit``,
``reset_counters``, ``requests``, ``rate_limited``, ``rate_limit_headers``); a simulator
that answers 404 on an endpoint makes the cases that need it skip, naming the endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

SEED = "/_contract/seed"
FAULT = "/_contract/fault"
RATE_LIMIT = "/_contract/rate_limit"
RESET = "/_contract/reset"
STATE = "/_contract/state"
TIMEOUT_S = 5.0


class RemoteSimulator:
    """The contract's ``Vendor`` for a simulator at ``url`` (any process, any language)."""

    def __init__(self, url: str, token_env: str, hang_s: float) -> None:
        self.url = url.rstrip("/")
        self.token_env = token_env
        self.hang_s = hang_s
        self.name = url

    def _call(self, method: str, path: str, body: Any = None) -> requests.Response:
        resp = requests.request(
            method,
            self.url + path,
            data=None if method == "GET" else json.dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=TIMEOUT_S,
        )
        if resp.status_code == 404:
            pytest.skip(f"the simulator at {self.url} answers 404 on {method} {path}")
        assert resp.status_code < 300, f"{method} {path}: HTTP {resp.status_code} {resp.text}"
        return resp

    # ----- what the contract calls -----------------------------------------------------------
    def seed(self, contacts: str | Path, token: str) -> None:
        data = json.loads(Path(contacts).read_text(encoding="utf-8"))
        self._call("POST", SEED, {"contacts": data, "token": token})
        self._call("POST", RATE_LIMIT, None)
        self._call("POST", RESET)

    def inject(self, fault: str, count: int = 1) -> None:
        self._call("POST", FAULT, {"fault": fault, "count": count, "hold_s": self.hang_s})

    def force_rate_limited(self, count: int = 1, retry_after_s: float | None = None) -> None:
        body = {"fault": "429", "count": count, "retry_after": retry_after_s}
        self._call("POST", FAULT, body)

    def set_rate_limit(self, rate_limit: tuple[int, float] | None) -> None:
        body = None if rate_limit is None else {"limit": rate_limit[0], "window_s": rate_limit[1]}
        self._call("POST", RATE_LIMIT, body)

    def reset_counters(self) -> None:
        self._call("POST", RESET)

    def state(self) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", STATE).json()
        return found

    @property
    def requests(self) -> int:
        return int(self.state()["requests"])

    @property
    def rate_limited(self) -> int:
        return int(self.state()["rate_limited"])

    def rate_limit_headers(self, _probe: Any = None) -> list[str]:
        """The header names the vendor sends while limited (empty: it documents none)."""
        return list(self.state()["rate_limit_headers"])
