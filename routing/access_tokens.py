"""What a gateway shows a worker: a token naming that worker, signed by the gateway's key.

``icdn1.<expiry>.<signature>``, the signature (Ed25519, the gateway's own key)
covering the worker's id and the expiry. A worker accepts a token only if a
gateway it trusts signed it, it names this worker, and it has not expired. So
whatever one worker receives is worth nothing at any other worker: it names
the wrong id, and no worker can sign for a gateway.

A worker trusts the keys of the gateways it registered with (each one's
answer to the registration carries its public key) and any listed in its
config (``gateway_keys``, for Consul fleets). Checked tokens are cached until
they expire, so a request costs one dictionary lookup, not a signature check.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from routing.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, from_text, to_text, verify

PREFIX = "icdn1"
LIFETIME_S = 24 * 3600.0
MAX_TOKEN_LENGTH = 128
MAX_CACHED = 256


def _message(worker_id: str, expires_at: int) -> bytes:
    return f"infercdn gateway-to-worker v2\n{worker_id}\n{expires_at}".encode()


class TokenMinter:
    """The gateway's side: one token per worker, made again when half its life is gone."""

    def __init__(self, identity: Identity, clock: Callable[[], float], lifetime_s: float = LIFETIME_S):
        self._identity = identity
        self._clock = clock
        self._lifetime_s = lifetime_s
        self._minted: dict[str, tuple[str, float]] = {}  # worker id → (token, renew after)

    @property
    def public_text(self) -> str:
        return self._identity.public_text

    def sign(self, message: bytes) -> bytes:
        """The gateway's signature (usage receipts are signed with the same key as tokens)."""
        return self._identity.sign(message)

    def token_for(self, worker_id: str) -> str:
        now = self._clock()
        cached = self._minted.get(worker_id)
        if cached is not None and now < cached[1]:
            return cached[0]
        expires_at = int(now + self._lifetime_s)
        signature = self._identity.sign(_message(worker_id, expires_at))
        token = f"{PREFIX}.{expires_at}.{to_text(signature)}"
        self._minted[worker_id] = (token, now + self._lifetime_s / 2)
        return token

    def forget(self, worker_id: str) -> None:
        self._minted.pop(worker_id, None)


class TokenChecker:
    """The worker's side: is this bearer token from a trusted gateway, for us, and current?"""

    def __init__(self, worker_id: str, clock: Callable[[], float], trusted: Iterable[bytes] = ()):
        self._worker_id = worker_id
        self._clock = clock
        self._trusted: list[bytes] = list(trusted)
        self._accepted: dict[str, float] = {}  # token → its expiry

    def trust(self, public_key: bytes) -> None:
        if len(public_key) == PUBLIC_KEY_BYTES and public_key not in self._trusted:
            self._trusted.append(public_key)

    def accepts(self, token: str) -> bool:
        now = self._clock()
        expires_at = self._accepted.get(token)
        if expires_at is not None:
            return now < expires_at
        if len(token) > MAX_TOKEN_LENGTH:
            return False
        prefix, _, rest = token.partition(".")
        expiry_text, _, signature_text = rest.partition(".")
        well_formed = expiry_text.isascii() and expiry_text.isdigit() and len(expiry_text) <= 12
        if not hmac.compare_digest(prefix, PREFIX) or not well_formed:
            return False
        expiry = int(expiry_text)
        signature = from_text(signature_text, SIGNATURE_BYTES)
        if signature is None or expiry <= now:
            return False
        message = _message(self._worker_id, expiry)
        if not any(verify(key, signature, message) for key in self._trusted):
            return False
        if len(self._accepted) >= MAX_CACHED:
            self._accepted = {t: e for t, e in self._accepted.items() if e > now}
            if len(self._accepted) >= MAX_CACHED:
                self._accepted.clear()
        self._accepted[token] = float(expiry)
        return True


def public_key_from_text(text: str) -> bytes | None:
    return from_text(text, PUBLIC_KEY_BYTES)
