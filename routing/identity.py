"""Ed25519 identities: a worker's own key, and a gateway's.

A worker's identity is its key pair, kept in a file only its user can read
(0600), made on first start. Gateways know a worker by its public key: the
join token only lets a new key enroll once. Public keys travel as unpadded
base64url text (43 characters); a key's fingerprint (base32 of its SHA-256,
lowercase) names it in default worker ids and in logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class KeyFileError(RuntimeError):
    """The key file is unreadable, malformed, or readable by others."""


def to_text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def from_text(text: str, size: int) -> bytes | None:
    """The bytes ``text`` encodes, or None unless it is base64url of exactly ``size`` bytes."""
    if not text.isascii() or len(text) > 2 * size:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def fingerprint(public_key: bytes) -> str:
    return base64.b32encode(hashlib.sha256(public_key).digest()).decode().lower().rstrip("=")[:16]


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """A private key and what may be said about it (never its secret half)."""

    def __init__(self, private_key: Ed25519PrivateKey):
        self._private = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Identity:
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def public_text(self) -> str:
        return to_text(self.public_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM: for its 0600 key file only."""
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"Identity({self.fingerprint})"


def load_or_create(path: Path) -> Identity:
    """The key in ``path`` (PEM, PKCS#8), made there with mode 0600 if absent; KeyFileError if unsafe."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load(path)
    except OSError as exc:
        raise KeyFileError(f"cannot create the key file {path}: {exc.strerror}") from None
    identity = Identity.generate()
    with os.fdopen(fd, "wb") as f:
        f.write(identity.pem())
    return identity


def save(identity: Identity, path: Path) -> None:
    """Replace the key in ``path`` with ``identity`` (atomically, mode 0600)."""
    write_private(path, identity.pem())


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by this user only, all or nothing (a temporary file, then a rename)."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def load_existing(path: Path) -> Identity:
    """The key in ``path``; KeyFileError if there is none, or it is unsafe."""
    if not path.exists():
        raise KeyFileError(f"there is no key file at {path}")
    return _load(path)


def _load(path: Path) -> Identity:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"the key file {path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise KeyFileError(f"the key file {path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"the key file {path} does not hold an Ed25519 key")
    return Identity(key)
