"""Start-up checks of what a process needs before it may say it is ready.

``secret_problems``: every secret a connections file names (``token_env``, an OAuth
connection's ``client_id_env`` / ``client_secret_env`` / ``private_key_env``, and each ``*_env``
option) must be set, not a placeholder, and (all but the PEM key of ``private_key_env``,
which is only ever signed with) fit for an HTTP header: a client id and secret travel in
``Authorization: Basic`` for some vendors (auth/vendors.py).

``header_safe``: RFC 9110 section 5.5 allows visible ASCII in a field value, with spaces
and tabs inside only; ``requests`` (http.client) encodes headers as Latin-1 and raises
``UnicodeEncodeError`` quoting the whole value, token included, for anything else, so a
token pasted with typographic quotes is refused here, naming its variable and never quoting
its value.

Used by ``contact-lookup check``, at worker start (a worker without its secrets exits
instead of becoming ready) and, through ``webhook_token_problem``, by the webhook and by
``check`` for ``RC_VERIFICATION_TOKEN``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from contact_lookup.model.config import Config, Connection
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


WEBHOOK_TOKEN = "RC_VERIFICATION_TOKEN"  # noqa: S105  (the variable's name)


def webhook_token_problem(token: str | None) -> str | None:
    """The webhook's start-up rule for ``RC_VERIFICATION_TOKEN``, shared with ``check``: unset
    (the webhook then verifies nothing) is no problem here; set, it must be fit for a header
    (RingCentral sends it back in ``Verification-Token``) and not a placeholder."""
    if not token:
        return None
    return header_problem(WEBHOOK_TOKEN, token) or placeholder_problem(WEBHOOK_TOKEN, token)


@dataclass(frozen=True)
class Secret:
    """One environment variable holding a connection's secret; ``header``: its value is sent
    in (or checked as fit for) an HTTP header."""

    var: str
    header: bool = True


def connection_secrets(conn: Connection) -> list[Secret]:
    """The secrets ``conn`` reads from the environment: ``token_env`` (auth = "token"), the
    OAuth client's ``client_id_env`` / ``client_secret_env`` / ``private_key_env``, and each
    ``*_env`` option."""
    out = [Secret(conn.token_env)] if conn.token_env and not conn.uses_token_store else []
    if conn.uses_token_store:
        out += [Secret(v) for v in (conn.client_id_env, conn.client_secret_env) if v]
        if conn.private_key_env:
            out.append(Secret(conn.private_key_env, header=False))  # a PEM key, many lines
    out += [
        Secret(v)
        for k, v in sorted(conn.options.items())
        if k.endswith("_env") and isinstance(v, str) and v
    ]
    return out


def secret_variables(config: Config) -> dict[str, list[Secret]]:
    """Per connection name, the environment variables that hold its secrets."""
    return {conn.name: connection_secrets(conn) for conn in config.connections.values()}


def variable_problem(
    var: str, env: Mapping[str, str] | None = None, *, header: bool = True
) -> str | None:
    """Why the secret in ``var`` is unusable (unset, unfit for a header when ``header``, a
    placeholder), or None. Never quotes the value."""
    value = (os.environ if env is None else env).get(var, "")
    if not value:
        return f"environment variable {var} is not set"
    return (header_problem(var, value) if header else None) or placeholder_problem(var, value)


def secret_problems(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """One line per secret that is unset or unfit; empty when all are fine."""
    problems = []
    for name, secrets in secret_variables(config).items():
        for secret in secrets:
            problem = variable_problem(secret.var, env, header=secret.header)
            if problem:
                problems.append(f"connection {name!r}: {problem}")
    return problems
