"""Passwords at rest: AES-256-GCM under the fleet's key.

Each value gets a fresh 96-bit nonce; the account's address and the field name are the associated
data, so a ciphertext copied into another row or field does not decrypt. The key's id (a hash of
the key, never the key) is stored beside the ciphertexts: a wrong key is named before anything is
decrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from inboxcheck._errors import InboxcheckError

__all__ = ["KEY_ENV", "FleetKey", "FleetKeyError", "WrongKeyError", "load_key", "new_key_text"]

KEY_ENV: Final = "INBOXCHECK_FLEET_KEY"
_NONCE: Final = 12
_AAD_PREFIX: Final = b"inboxcheck-fleet-v1\x00"


class FleetKeyError(InboxcheckError):
    """The fleet's key is missing or unusable."""


class WrongKeyError(InboxcheckError):
    """Some accounts' passwords were encrypted under another key (they are named)."""

    def __init__(self, addresses: list[str]) -> None:
        shown = ", ".join(addresses[:10]) + (
            f" and {len(addresses) - 10} more" if len(addresses) > 10 else ""
        )
        super().__init__(
            f"the fleet key does not open the passwords of {len(addresses)} account(s): {shown}. "
            f"Give the key they were stored with ({KEY_ENV} or --key-file); nothing was decrypted "
            "or changed"
        )
        self.addresses = addresses


@dataclass(frozen=True)
class FleetKey:
    """A 32-byte AES-256-GCM key and its id. Its repr never shows the key."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise FleetKeyError("the fleet key must be 32 bytes (base64 of 32 random bytes)")

    @property
    def id(self) -> str:
        return hashlib.sha256(b"inboxcheck-fleet-key-id\x00" + self.secret).hexdigest()[:16]

    @staticmethod
    def _aad(address: str, name: str) -> bytes:
        return _AAD_PREFIX + address.lower().encode() + b"\x00" + name.encode()

    def encrypt(self, address: str, name: str, plaintext: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.secret).encrypt(nonce, plaintext.encode(), self._aad(address, name))

    def decrypt(self, address: str, name: str, blob: bytes) -> str | None:
        """The plaintext, or ``None`` when this key (or this row and field) does not open it."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            data = AESGCM(self.secret).decrypt(blob[:_NONCE], blob[_NONCE:], self._aad(address, name))
        except (InvalidTag, ValueError):
            return None
        return data.decode()


def new_key_text() -> str:
    """A new random key, base64 (what ``fleet key new`` prints)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _decode(text: str, where: str) -> FleetKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise FleetKeyError(f"{where} is not base64 (make one with `inboxcheck fleet key new`)") from None
    if len(raw) != 32:
        raise FleetKeyError(
            f"{where} holds {len(raw)} bytes; the fleet key is 32 bytes "
            "(make one with `inboxcheck fleet key new`)"
        )
    return FleetKey(raw)


def key_from_file(path: Path) -> FleetKey:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a key file"
        raise FleetKeyError(f"{path}: cannot read the fleet key: {reason}") from None
    return _decode(text, str(path))


def load_key(*, key_file: Path | None = None, env: dict[str, str] | None = None) -> FleetKey:
    """The fleet's key from ``key_file``, else from INBOXCHECK_FLEET_KEY; FleetKeyError when neither."""
    if key_file is not None:
        return key_from_file(key_file)
    text = (env if env is not None else os.environ).get(KEY_ENV)
    if not text:
        raise FleetKeyError(
            f"the fleet stores passwords encrypted and needs its key: set {KEY_ENV} (base64 of 32 "
            "bytes) or give --key-file; make a new key with `inboxcheck fleet key new`"
        )
    return _decode(text, KEY_ENV)
