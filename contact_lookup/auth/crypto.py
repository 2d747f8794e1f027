"""Tokens encrypted at rest: Fernet (AES-128-CBC + HMAC-SHA256, the ``cryptography``
package's authenticated recipe) behind ``MultiFernet`` so the key can be rotated.

``TOKEN_ENCRYPTION_KEY`` holds one or more Fernet keys (urlsafe base64 of 32 bytes, as
``Fernet.generate_key()`` prints them), comma-separated. The first encrypts; every key
decrypts. Rotation: put the new key first, keep the old one after it, run
``contact-lookup auth rotate-key`` (re-encrypts every stored record with the first key), then
drop the old key. A Redis dump alone therefore holds no usable secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from contact_lookup.model.errors import ConfigError

ENV = "TOKEN_ENCRYPTION_KEY"


class TokenCipher:
    """Encrypts and decrypts token records (JSON objects) with the configured keys."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ConfigError(
                f"{ENV} is not set: OAuth connections need a Fernet key "
                "(python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            )
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])
        except (ValueError, TypeError):
            raise ConfigError(
                f"{ENV} must be Fernet keys (urlsafe base64 of 32 bytes), comma-separated"
            ) from None

    def encrypt(self, record: Mapping[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(dict(record)).encode())

    def decrypt(self, blob: bytes) -> dict[str, Any]:
        """The record; ConfigError when no configured key opens it (a key was dropped)."""
        try:
            data = json.loads(self._fernet.decrypt(blob))
        except (InvalidToken, ValueError):
            raise ConfigError(
                f"a stored token record cannot be decrypted with {ENV}: the key that wrote it "
                "is no longer configured (add it back after the new key, or reconnect)"
            ) from None
        return data if isinstance(data, dict) else {}

    def rotate(self, blob: bytes) -> bytes:
        """The same record encrypted with the first (primary) key."""
        return self._fernet.rotate(blob)
