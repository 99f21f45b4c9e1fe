"""Key rotation a worker does itself: the old key hands its worker id over to a new key.

``infercdn worker rotate-key`` makes a new key and has the old one sign
"this key hands over to that one" (Ed25519, a domain-separated message of the
two public keys). The old private key is then gone from the machine. The
worker sends the handover with its registrations (a header; in Consul, a Meta
key), signed as usual by the *new* key, which proves it holds it. A gateway
that binds the id to the old key moves the binding to the new key and keeps
its state (approved or pending; a revoked id stays refused); from then on the
old key is refused for that id. A handover is one step: a gateway that missed
two rotations in a row needs ``infercdn fleet forget``.

The handover lives beside the key file (``<key>.handover``, 0600) with the
fingerprint of the first key of the line, which keeps naming the default
worker id, so a rotation does not change who the worker is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from routing.identity import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Identity,
    KeyFileError,
    from_text,
    load_existing,
    save,
    to_text,
    verify,
    write_private,
)

DOMAIN = b"infercdn key handover v1\n"
MAX_TEXT = 160  # two base64url fields and a dot: 43 + 1 + 86


def _signed(old_key: bytes, new_key: bytes) -> bytes:
    return DOMAIN + old_key + new_key


@dataclass(frozen=True, slots=True)
class Handover:
    old_key: bytes
    signature: bytes  # by the old key, over it and the new key
    first_fingerprint: str  # of the first key of the line: the default worker id keeps naming it

    @property
    def text(self) -> str:
        """The wire form: the old key and its signature, base64url, joined by a dot."""
        return f"{to_text(self.old_key)}.{to_text(self.signature)}"

    def hands_to(self, new_key: bytes) -> bool:
        return verify(self.old_key, self.signature, _signed(self.old_key, new_key))


def hand_over(old: Identity, new_key: bytes, first_fingerprint: str = "") -> Handover:
    """``old``'s signed word that ``new_key`` speaks for its worker id from now on."""
    first = first_fingerprint or old.fingerprint
    return Handover(old.public_key, old.sign(_signed(old.public_key, new_key)), first)


def handed_over_by(text: str, new_key: bytes) -> bytes | None:
    """The old key that ``text`` shows handing over to ``new_key``; None unless it is well formed and signed."""
    if len(text) > MAX_TEXT or text.count(".") != 1:
        return None
    key_text, signature_text = text.split(".")
    old_key, signature = from_text(key_text, PUBLIC_KEY_BYTES), from_text(signature_text, SIGNATURE_BYTES)
    if old_key is None or signature is None or old_key == new_key:
        return None
    return old_key if verify(old_key, signature, _signed(old_key, new_key)) else None


def handover_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".handover")


def load_handover(key_path: Path, identity: Identity) -> Handover | None:
    """The handover to ``identity`` kept beside its key file; None if there is none, or it is for another key."""
    path = handover_path(key_path)
    try:
        fields = json.loads(path.read_text())
        old_key = from_text(str(fields["old_key"]), PUBLIC_KEY_BYTES)
        signature = from_text(str(fields["signature"]), SIGNATURE_BYTES)
        first = str(fields["first_fingerprint"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"the handover file {path} is unreadable: {exc}") from None
    if old_key is None or signature is None or not first.isalnum():
        raise KeyFileError(f"the handover file {path} is malformed")
    handover = Handover(old_key, signature, first)
    return handover if handover.hands_to(identity.public_key) else None


def rotate(key_path: Path) -> tuple[Identity, Identity]:
    """Replace the key in ``key_path`` with a new one that the old one hands over to; (old, new).

    The handover is written before the new key, so that a crash in between leaves the old key working."""
    old = load_existing(key_path)
    previous = load_handover(key_path, old)
    new = Identity.generate()
    first = previous.first_fingerprint if previous is not None else old.fingerprint
    handover = Handover(old.public_key, old.sign(_signed(old.public_key, new.public_key)), first)
    fields = {
        "old_key": to_text(handover.old_key),
        "signature": to_text(handover.signature),
        "first_fingerprint": first,
    }
    write_private(handover_path(key_path), json.dumps(fields).encode())
    save(new, key_path)
    return old, new
