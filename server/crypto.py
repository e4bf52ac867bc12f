"""Sealing secrets at rest: channel credentials, with the installation's encryption keys.

``LIVEOP_ENCRYPTION_KEYS`` lists Fernet keys, comma-separated: the first seals, every one
opens, so a key is rotated by putting a new one first and re-sealing (``liveop
rotate-credentials``) before the old one is dropped. Without the variable, one key is
derived from the secret key (LIVEOP_SECRET_KEY or the data directory's), so changing that
key then makes the credentials unreadable. The keys never enter the store, so a dump of it
reveals no credential.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# HKDF's context: a key derived for sealing credentials is no other key derived from the secret.
_DERIVED_KEY_INFO = b"liveop channel credentials v1"
FERNET_KEY_BYTES = 32


class UnreadableSecret(Exception):
    """A sealed value none of the configured keys opens (a key was dropped too soon)."""


def check_key(key: str) -> str:
    """A usable Fernet key (32 url-safe base64 bytes), or ValueError saying what it is not."""
    try:
        Fernet(key)
    except (ValueError, TypeError):
        raise ValueError(
            "an encryption key is 32 bytes in url-safe base64 (44 characters)"
        ) from None
    return key


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def derived_key(secret: str) -> str:
    """A Fernet key from the installation's secret key (HKDF-SHA256)."""
    hkdf = HKDF(hashes.SHA256(), FERNET_KEY_BYTES, salt=None, info=_DERIVED_KEY_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode("utf-8"))).decode("ascii")


class Sealer:
    """Seals a mapping of secrets into one opaque text, and opens it again."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def seal(self, secrets: Mapping[str, str]) -> str:
        plain = json.dumps(dict(secrets), sort_keys=True).encode("utf-8")
        return self._fernet.encrypt(plain).decode("ascii")

    def open(self, sealed: str) -> dict[str, str]:
        try:
            plain = self._fernet.decrypt(sealed.encode("ascii"))
        except InvalidToken:
            raise UnreadableSecret("no configured encryption key opens this secret") from None
        opened: dict[str, str] = json.loads(plain)
        return opened

    def reseal(self, sealed: str) -> str:
        """The same secrets sealed with the first key (for key rotation)."""
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise UnreadableSecret("no configured encryption key opens this secret") from None
