"""Signed msgpack records as text: ``base64url(record) "." base64url(signature)``.

The signature is Ed25519 over a context string and the record's bytes, so a
record of one kind never passes as another. An empty signature means
unsigned. Audit records (``routing.audit_record``) and usage receipts
(``routing.receipt``) are sealed this way.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import msgpack

from routing.errors import InvalidRequest
from routing.identity import SIGNATURE_BYTES, from_text, to_text, verify


def seal_bytes(raw: bytes, context: bytes, sign: Callable[[bytes], bytes] | None) -> str:
    signature = sign(context + raw) if sign is not None else b""
    return to_text(raw) + "." + to_text(signature)


def unseal_bytes(text: object, what: str, *, max_chars: int, max_array_len: int) -> tuple[Any, bytes, bytes]:
    """The msgpack object, its bytes and the signature; InvalidRequest naming ``what`` if malformed."""
    if not isinstance(text, str) or len(text) > max_chars or text.count(".") != 1:
        raise InvalidRequest(f"{what} must be base64url text, a dot, and a signature")
    body, signature_text = text.split(".")
    signature = b"" if not signature_text else from_text(signature_text, SIGNATURE_BYTES)
    raw = _decoded(body)
    if signature is None or raw is None:
        raise InvalidRequest(f"{what} with a malformed encoding or signature")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_array_len=max_array_len)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise InvalidRequest(f"{what} that is not msgpack: {exc}") from None
    return obj, raw, signature


def signed(public_key: bytes, signature: bytes, context: bytes, raw: bytes) -> bool:
    return bool(signature) and verify(public_key, signature, context + raw)


def _decoded(text: str) -> bytes | None:
    if not text.isascii():
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
