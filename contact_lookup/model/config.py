"""The connections file (docs/interface.md section 3): which CRM accounts lookups run against.

Secrets are never in this file: a connection names the environment variable that holds its
token (``token_env``), and the secret is read from the worker's own environment when the
connector is built, so it never travels in a task message.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers

from contact_lookup.model.errors import ConfigError

RESOLVERS = ("earliest-created", "most-recent-activity", "first-alphabetical")

# Keys every connection may have; anything else is a connector-specific option.
COMMON_KEYS = frozenset(
    {
        "crm",
        "rc_account",
        "formats",
        "region",
        "resolve",
        "create_option",
        "extension_lookup",
        "outbound_pop",
        "proxy",
        "token_env",
        "base_url",
        "contacts",
        "rate_limit",
        "rate_reserve",
        "max_concurrency",
        # How the connection authenticates (README "CRM authorisation"): see AUTH_KINDS.
        "auth",
        "client_id_env",
        "client_secret_env",
        "token_url",
        "authorize_url",
        "scopes",
        "private_key_file",
        "private_key_env",
        "username",
    }
)
# auth = "token": token_env holds a key that does not expire; "oauth2": refresh-token grant
# (RFC 6749 section 6) with tokens kept in the token store; "jwt-bearer": a signed assertion
# (RFC 7523) minted from a private key, Salesforce's server-to-server flow.
AUTH_KINDS = ("token", "oauth2", "jwt-bearer")

# The most requests of one connection a worker process may have in flight at once (the
# fan-out pool, contact_lookup/connectors/fanout.py, has room for several at the cap).
MAX_CONCURRENCY_CAP = 64


@dataclass(frozen=True)
class Connection:
    name: str
    crm: str
    rc_account: str = ""
    formats: str = ""
    region: str = "US"
    resolve: str | None = None
    create_option: bool = False
    extension_lookup: bool = False
    outbound_pop: bool = False
    proxy: str | None = None
    token_env: str | None = None
    base_url: str | None = None
    contacts: Path | None = None
    # Requests allowed per window for the shared limiter, e.g. "50/60" (requests/seconds).
    rate_limit: str | None = None
    # Share of each rate-limit window kept for call pops (contact_lookup/core/ratelimit.py).
    rate_reserve: float = 0.2
    # CRM requests in flight at once per worker process; None: the connector's vendor default.
    max_concurrency: int | None = None
    auth: str = "token"
    client_id_env: str | None = None
    client_secret_env: str | None = None
    token_url: str | None = None
    # The vendor's authorization page (RFC 6749 section 3.1) for `auth connect`; None: the
    # documented one, or /oauth/authorize beside token_url (Capsule spells it /oauth/authorise).
    authorize_url: str | None = None
    scopes: tuple[str, ...] = ()
    private_key_file: Path | None = None
    private_key_env: str | None = None
    username: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uses_token_store(self) -> bool:
        """True when the credential comes from the token store, not from ``token_env``."""
        return self.auth != "token"

    def env_secret(self, var: str | None, key: str, env: Mapping[str, str] | None = None) -> str:
        """The value of the environment variable a ``*_env`` key names; ConfigError if unset."""
        if not var:
            raise ConfigError(f"connection {self.name!r}: {key} is required for auth={self.auth}")
        env = os.environ if env is None else env
        value = env.get(var, "")
        if not value:
            raise ConfigError(
                f"connection {self.name!r}: environment variable {var} ({key}) is not set"
            )
        return value

    @property
    def instance(self) -> str:
        """Identifies the CRM instance (not the credential) for cache and limiter keys."""
        return f"{self.crm}|{self.base_url or self.contacts or ''}"

    def secret(self, env: Mapping[str, str] | None = None) -> str | None:
        """The connection's token from the environment; ConfigError when it is named but unset.

        None for connections whose credential comes from the token store (``auth`` oauth2 or
        jwt-bearer)."""
        if not self.token_env or self.uses_token_store:
            return None
        env = os.environ if env is None else env
        value = env.get(self.token_env, "")
        if not value:
            raise ConfigError(
                f"connection {self.name!r}: environment variable {self.token_env} "
                "(its token_env) is not set"
            )
        return value

    def option_secret(self, key: str, env: Mapping[str, str] | None = None) -> str:
        """A further secret a connector needs, named by an ``*_env`` option (e.g. password_env)."""
        var = self.options.get(key)
        if not isinstance(var, str) or not var:
            raise ConfigError(f"connection {self.name!r}: option {key!r} is required")
        return self.env_secret(var, key, env)


# The settle window's default and bound, in seconds (README "Event rules").
DEFAULT_SETTLE_S = 10.0
MAX_SETTLE_S = 300.0


@dataclass(frozen=True)
class Config:
    connections: Mapping[str, Connection]
    extensions: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None
    # RingCentral extension ids of IVR menus and call queues: their parties pass a call on
    # and never get its call log ([telephony] routing_extensions).
    routing_extensions: frozenset[str] = frozenset()
    # The settle window ([telephony] settle_seconds): a call log waits this long after the
    # call first appears ended, and a later event that changes whose call log it is
    # supersedes it (README "Event rules", contact_lookup.core.supersede).
    settle_seconds: float = DEFAULT_SETTLE_S

    def connection(self, name: str) -> Connection:
        try:
            return self.connections[name]
        except KeyError:
            known = ", ".join(sorted(self.connections)) or "none"
            raise ConfigError(f"unknown connection {name!r} (configured: {known})") from None

    def connection_for_extension(self, extension_id: str | None) -> Connection | None:
        """The connection an extension's events use, through ``[extensions]`` and its default."""
        name = self.extensions.get(str(extension_id)) if extension_id else None
        name = name or self.extensions.get("default")
        return self.connections.get(name) if name else None


def _typed(name: str, table: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = table.get(key, default)
    if value is not default and not isinstance(value, kind):
        raise ConfigError(f"connection {name!r}: {key} must be a {kind.__name__}")
    return value


def _connection(name: str, table: Mapping[str, Any], base_dir: Path) -> Connection:
    if not isinstance(table, Mapping):
        raise ConfigError(f"connection {name!r} must be a table")
    crm = table.get("crm")
    if not isinstance(crm, str) or not crm:
        raise ConfigError(f"connection {name!r}: crm is required")
    resolve = _typed(name, table, "resolve", str, None)
    if resolve is not None and resolve not in RESOLVERS:
        raise ConfigError(f"connection {name!r}: resolve must be one of {', '.join(RESOLVERS)}")
    contacts = _typed(name, table, "contacts", str, None)
    if crm == "json" and not contacts:
        raise ConfigError(f"connection {name!r}: the json connector needs contacts = PATH")
    rate_limit = _typed(name, table, "rate_limit", str, None)
    if rate_limit is not None:
        parse_rate_limit(rate_limit, name)
    reserve = table.get("rate_reserve", 0.2)
    if isinstance(reserve, bool) or not isinstance(reserve, int | float) or not 0 <= reserve < 1:
        raise ConfigError(
            f"connection {name!r}: rate_reserve must be a fraction from 0 to below 1 (e.g. 0.2)"
        )
    max_concurrency = table.get("max_concurrency")
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or not 1 <= max_concurrency <= MAX_CONCURRENCY_CAP
    ):
        raise ConfigError(
            f"connection {name!r}: max_concurrency must be a whole number from 1 to "
            f"{MAX_CONCURRENCY_CAP} (got {max_concurrency!r})"
        )
    rc_account = table.get("rc_account", "")
    auth = _auth_keys(name, table, base_dir)
    return Connection(
        name=name,
        crm=crm,
        rc_account=str(rc_account),
        formats=_typed(name, table, "formats", str, ""),
        region=_region(name, table),
        resolve=resolve,
        create_option=_typed(name, table, "create_option", bool, False),
        extension_lookup=_typed(name, table, "extension_lookup", bool, False),
        outbound_pop=_typed(name, table, "outbound_pop", bool, False),
        proxy=_typed(name, table, "proxy", str, None),
        token_env=_typed(name, table, "token_env", str, None),
        base_url=_typed(name, table, "base_url", str, None),
        # Relative paths are relative to the connections file, like any config that names files.
        contacts=(base_dir / contacts) if contacts else None,
        rate_limit=rate_limit,
        rate_reserve=float(reserve),
        max_concurrency=max_concurrency,
        **auth,
        options={k: v for k, v in table.items() if k not in COMMON_KEYS},
    )


def _region(name: str, table: Mapping[str, Any]) -> str:
    """The connection's region: a CLDR region code the phone library knows ("US", "GB").

    Checked at load: an unknown code ("USA", "UK") would make every number written without
    a country code invalid, lookup after lookup, with nothing pointing at the file.
    """
    region = _typed(name, table, "region", str, "US").upper()
    if region in phonenumbers.SUPPORTED_REGIONS:
        return region
    known = sorted(phonenumbers.SUPPORTED_REGIONS)
    close = ["GB"] if region == "UK" else difflib.get_close_matches(region, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"connection {name!r}: region {region!r} is not a region code{hint} "
        "(two letters, ISO 3166-1 alpha-2, as the phone library uses)"
    )


def _auth_keys(name: str, table: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """The authorisation keys of a connection, checked: which kind, and what it needs."""
    where = f"connection {name!r}"
    auth = _typed(name, table, "auth", str, "token")
    if auth not in AUTH_KINDS:
        raise ConfigError(f"{where}: auth must be one of {', '.join(AUTH_KINDS)} (got {auth!r})")
    out: dict[str, Any] = {"auth": auth}
    for key in (
        "client_id_env",
        "client_secret_env",
        "token_url",
        "authorize_url",
        "private_key_env",
        "username",
    ):
        out[key] = _typed(name, table, key, str, None)
    scopes = table.get("scopes", ())
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) for s in scopes):
        raise ConfigError(f"{where}: scopes must be a string or a list of strings")
    out["scopes"] = tuple(scopes)
    key_file = _typed(name, table, "private_key_file", str, None)
    out["private_key_file"] = (base_dir / key_file) if key_file else None
    for url_key in ("token_url", "authorize_url"):
        url = out[url_key]
        if url is not None and not url.startswith(("https://", "http://")):
            raise ConfigError(f"{where}: {url_key} must be an http(s) URL (got {url!r})")
    store_keys = ("client_id_env", "client_secret_env", "token_url", "authorize_url", "scopes")
    jwt_keys = ("private_key_file", "private_key_env", "username")
    if auth == "token":
        extra = [k for k in (*store_keys, *jwt_keys) if k in table]
        if extra:
            raise ConfigError(f'{where}: {", ".join(extra)} need auth = "oauth2" or "jwt-bearer"')
        return out
    if "token_env" in table:
        raise ConfigError(
            f'{where}: token_env is for auth = "token"; with auth = {auth!r} the tokens live '
            "in the token store (contact-lookup auth connect / auth seed)"
        )
    if not out["client_id_env"]:
        raise ConfigError(f"{where}: auth = {auth!r} needs client_id_env")
    if auth == "oauth2":
        if not out["client_secret_env"]:
            raise ConfigError(f'{where}: auth = "oauth2" needs client_secret_env')
        extra = [k for k in jwt_keys if k in table]
        if extra:
            raise ConfigError(f'{where}: {", ".join(extra)} are for auth = "jwt-bearer"')
        return out
    if (out["private_key_file"] is None) == (out["private_key_env"] is None):
        raise ConfigError(
            f'{where}: auth = "jwt-bearer" needs one of private_key_file or private_key_env'
        )
    if not out["username"]:
        raise ConfigError(f'{where}: auth = "jwt-bearer" needs username (the CRM user)')
    return out


def parse_rate_limit(text: str, name: str = "?") -> tuple[int, float]:
    """``"50/60"`` -> (50 requests, 60.0 seconds)."""
    try:
        count, _, window = text.partition("/")
        requests, seconds = int(count), float(window or 1)
    except ValueError:
        requests, seconds = 0, 0.0
    if requests < 1 or seconds <= 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigError(
            f"connection {name!r}: rate_limit {text!r} is impossible: it must be at least 1 "
            "request per window of more than 0 seconds, written like '50/60' (requests/seconds)"
        )
    return requests, seconds


TABLES = ("connections", "extensions", "telephony")
TELEPHONY_KEYS = ("routing_extensions", "settle_seconds")


def _unknown(where: str, key: str, valid: tuple[str, ...] | list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (valid: {', '.join(valid)})"
    return ConfigError(f"{where}: unknown key {key!r}{hint}")


def parse_config(data: Mapping[str, Any], base_dir: Path, path: Path | None = None) -> Config:
    """A Config from the parsed TOML; ConfigError names the file, table and key at fault.

    Top-level tables other than ``TABLES`` and keys of ``[telephony]`` other than
    ``TELEPHONY_KEYS`` are refused with the closest valid name (a typo must not be ignored).
    """
    where = f"connections file {str(path)!r}" if path else "connections file"
    for key in data:
        if key not in TABLES:
            raise _unknown(where, key, TABLES)
    tables = data.get("connections", {})
    if not isinstance(tables, Mapping):
        raise ConfigError("[connections] must be a table of connections")
    try:
        connections = {name: _connection(name, t, base_dir) for name, t in tables.items()}
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
    extensions = data.get("extensions", {})
    if not isinstance(extensions, Mapping):
        raise ConfigError("[extensions] must map extension ids to connection names")
    for ext, conn in extensions.items():
        if conn not in connections:
            known = ", ".join(sorted(connections)) or "none"
            raise ConfigError(
                f"{where}: [extensions] {ext} names unknown connection {conn!r} "
                f"(configured: {known})"
            )
    telephony = data.get("telephony", {})
    if not isinstance(telephony, Mapping):
        raise ConfigError(f"{where}: [telephony] must be a table")
    for key in telephony:
        if key not in TELEPHONY_KEYS:
            raise _unknown(f"{where}: [telephony]", key, TELEPHONY_KEYS)
    routing = telephony.get("routing_extensions", [])
    if not isinstance(routing, list) or not all(
        isinstance(x, str | int) and not isinstance(x, bool) and str(x).isdigit() for x in routing
    ):
        raise ConfigError(
            f"{where}: [telephony] routing_extensions must be a list of RingCentral "
            'extension ids, e.g. ["62242421016"]'
        )
    settle = telephony.get("settle_seconds", DEFAULT_SETTLE_S)
    if (
        isinstance(settle, bool)
        or not isinstance(settle, int | float)
        or not 0 <= settle <= MAX_SETTLE_S
    ):
        raise ConfigError(
            f"{where}: [telephony] settle_seconds must be a number of seconds from 0 to "
            f"{MAX_SETTLE_S:g} (got {settle!r}); it must also stay below VISIBILITY_TIMEOUT"
        )
    return Config(
        connections=connections,
        extensions={str(k): str(v) for k, v in extensions.items()},
        path=path,
        routing_extensions=frozenset(str(x) for x in routing),
        settle_seconds=float(settle),
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the connections file; ConfigError names what is wrong."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"connections file {str(p)!r} not found (set CONTACT_LOOKUP_CONFIG)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"connections file {str(p)!r} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"connections file {str(p)!r} is not valid TOML: {exc}") from None
    return parse_config(data, p.resolve().parent, p)
