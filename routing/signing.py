"""Signed control-plane messages: HMAC-SHA256 with a key derived from the join token.

A worker signs each registration, heartbeat and deregistration over the
method, path, a timestamp, a one-time nonce and the body. The gateway
checks the signature in constant time, refuses a timestamp more than
``max_skew_s`` away from its clock (stale), and a nonce it has already seen
within that window (replayed). The join token itself never travels.

Each purpose gets its own key (``derive_key``), so the credential the gateway
shows a worker cannot be used to sign an announcement, and vice versa.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping

from routing.errors import Busy, Unauthorized

TIMESTAMP = "x-infercdn-timestamp"
NONCE = "x-infercdn-nonce"
SIGNATURE = "x-infercdn-signature"

ANNOUNCE = "infercdn announce v1"
GATEWAY_TO_WORKER = "infercdn gateway-to-worker v1"


def derive_key(join_token: str, purpose: str) -> bytes:
    return hmac.new(join_token.encode(), purpose.encode(), hashlib.sha256).digest()


def worker_access_token(join_token: str) -> str:
    """What a gateway shows a worker (``Authorization: Bearer``): proof it holds the join token."""
    return derive_key(join_token, GATEWAY_TO_WORKER).hex()


def _mac(key: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    head = f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n".encode()
    return hmac.new(key, head + body, hashlib.sha256).hexdigest()


class Signer:
    def __init__(self, join_token: str):
        self._key = derive_key(join_token, ANNOUNCE)

    def headers(self, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
        timestamp, nonce = str(int(now)), secrets.token_hex(16)
        return {TIMESTAMP: timestamp, NONCE: nonce, SIGNATURE: _mac(self._key, method, path, timestamp, nonce, body)}


class Verifier:
    def __init__(self, join_token: str, *, max_skew_s: float = 30.0, max_nonces: int = 100_000):
        self._key = derive_key(join_token, ANNOUNCE)
        self._max_skew_s = max_skew_s
        self._max_nonces = max_nonces
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce → when it stops mattering

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Raise Unauthorized unless the message is signed with the join token, fresh and new."""
        timestamp, nonce, signature = headers.get(TIMESTAMP), headers.get(NONCE), headers.get(SIGNATURE)
        if not timestamp or not nonce or not signature:
            raise Unauthorized("This endpoint needs a signed message (join token).", code="unsigned")
        expected = _mac(self._key, method, path, timestamp, nonce, body)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Unauthorized("The signature does not match (wrong join token?).", code="bad_signature")
        # Whole seconds only: "nan" or "inf" would pass any window check and expire at once (replayable).
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise Unauthorized("The timestamp must be whole seconds.", code="bad_signature")
        sent = float(timestamp)
        if abs(now - sent) > self._max_skew_s:
            raise Unauthorized("The message is stale (check the clocks).", code="stale_message")
        self._forget_expired(now)
        if nonce in self._seen:
            raise Unauthorized("This message was already received (replay).", code="replayed_message")
        if len(self._seen) >= self._max_nonces:
            # Forgetting a nonce still inside its window would let it be replayed: refuse new ones instead.
            raise Busy("Too many signed messages in the last minute; retry shortly.", retry_after_s=1)
        # Kept while its timestamp is fresh. Senders' clocks differ, so insertion order is expiry order
        # only roughly: the sweep stops at the first fresh one, and never drops a fresh one.
        self._seen[nonce] = sent + self._max_skew_s

    def _forget_expired(self, now: float) -> None:
        while self._seen:
            nonce, until = next(iter(self._seen.items()))
            if until >= now:
                return
            del self._seen[nonce]
