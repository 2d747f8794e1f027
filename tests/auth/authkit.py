"""Helpers for the token-store tests: an OAuth simulator, its connections file, a service
with a TokenManager over the test Redis. Real Redis, real HTTP, no stubs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from cryptography.fernet import Fernet

from contact_lookup.auth.crypto import TokenCipher
from contact_lookup.auth.endpoint import TokenSet
from contact_lookup.auth.manager import TokenManager
from contact_lookup.auth.store import TokenStore
from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import Config, load_config
from crmsim.base import Simulator
from crmsim.oauth import OAuthServer, enable

NUMBERS = [f"+1415555{3000 + i:04d}" for i in range(200)]
CONTACTS = [{"id": f"c{i}", "name": f"Person {i}", "phone": n} for i, n in enumerate(NUMBERS)]
KEY = Fernet.generate_key().decode()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, name: str, table: dict[str, Any]) -> Path:
    lines = [f"[connections.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def oauth_sim(cls: type[Simulator], **options: Any) -> Iterator[tuple[Simulator, OAuthServer]]:
    with cls(CONTACTS) as sim:
        yield sim, enable(sim, **options)


def manager(client: redis.Redis, oauth: OAuthServer, **kwargs: Any) -> TokenManager:
    return TokenManager(TokenStore(client, TokenCipher(KEY)), env=oauth.env(), **kwargs)


def service(config: Config, client: redis.Redis, tokens: TokenManager) -> LookupService:
    factory = ConnectorFactory(timeout_s=5, credentials=tokens)
    return LookupService(config, ContactCache(client, 60), factory)


def seed(tokens: TokenManager, oauth: OAuthServer, name: str, *, expired: bool = False) -> str:
    """Store a fresh grant from the simulator; ``expired``: its access token already is."""
    access, refresh = oauth.issue()
    now = time.time()
    lifetime = oauth.lifetime_s
    if expired:
        oauth.expire_access_tokens()
    tokens.store.save(
        name,
        TokenSet(
            access, refresh, expires_at=now - 1 if expired else now + lifetime, lifetime_s=lifetime
        ),
    )
    return refresh


def setup(tmp_path: Path, sim: Simulator, oauth: OAuthServer, name: str = "crm") -> Config:
    return load_config(write_config(tmp_path / "connections.toml", name, oauth.connection()))
