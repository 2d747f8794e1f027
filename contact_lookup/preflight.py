"""Start-up checks of what a process needs before it may say it is ready.

``secret_problems``: every secret a connections file names (``token_env`` and each ``*_env``
option) must be set and fit for an HTTP header. ``header_safe``: RFC 9110 section 5.5 allows
visible ASCII in a field value, with spaces and tabs inside only; ``requests`` (http.client)
encodes headers as Latin-1 and raises ``UnicodeEncodeError`` quoting the whole value, token
included, for anything else, so a token pasted with typographic quotes is refused here,
naming its variable and never quoting its value.

Used by ``contact-lookup check``, at worker start (a worker without its secrets exits
instead of becoming ready) and by the webhook for ``RC_VERIFICATION_TOKEN``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from contact_lookup.model.config import Config
from contact_lookup.model.errors import ConfigError

_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?")
# The values an example file or a tutorial leaves behind (.env.example: change-me).
_PLACEHOLDER = re.compile(
    r"change[-_ ]?me|^<.*>$|^(?:placeholder|todo|tbd|xxx+|\.\.\.|your[-_ ].*)$", re.IGNORECASE
)


def placeholder_problem(name: str, value: str) -> str | None:
    """Why ``value`` of ``name`` looks like a placeholder rather than a secret, or None."""
    if _PLACEHOLDER.search(value.strip()):
        return f"{name} still holds a placeholder (such as change-me): set a real secret"
    return None


def header_problem(name: str, value: str) -> str | None:
    """Why ``value`` (held by variable ``name``) cannot be sent in an HTTP header, or None."""
    if _HEADER_VALUE.fullmatch(value):
        return None
    return (
        f"{name} holds characters that cannot be sent in an HTTP header (non-ASCII such as "
        "typographic quotes, control characters or surrounding spaces); set it again"
    )


def header_safe(name: str, value: str) -> None:
    """ConfigError naming ``name`` (never quoting ``value``) when ``header_problem`` finds one."""
    problem = header_problem(name, value)
    if problem:
        raise ConfigError(problem)


def secret_variables(config: Config) -> dict[str, list[str]]:
    """Per connection name, the environment variables that hold its secrets."""
    out: dict[str, list[str]] = {}
    for conn in config.connections.values():
        names = [conn.token_env] if conn.token_env else []
        names += [
            v
            for k, v in sorted(conn.options.items())
            if k.endswith("_env") and isinstance(v, str) and v
        ]
        out[conn.name] = names
    return out


def variable_problem(var: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why the secret in ``var`` is unusable (unset, or unfit for a header), or None."""
    value = (os.environ if env is None else env).get(var, "")
    if not value:
        return f"environment variable {var} is not set"
    return header_problem(var, value) or placeholder_problem(var, value)


def secret_problems(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """One line per secret that is unset or unfit for a header; empty when all are fine."""
    problems = []
    for name, variables in secret_variables(config).items():
        for var in variables:
            problem = variable_problem(var, env)
            if problem:
                problems.append(f"connection {name!r}: {problem}")
    return problems
