"""Signed control-plane messages: each worker signs with its own Ed25519 key.

Every registration, heartbeat and deregistration carries, in headers, the
worker's id, its public key, a timestamp, a one-time nonce and an Ed25519
signature over all of them plus the method, path and body. A registration
from a key the gateway does not know yet also carries an *enrollment proof*:
an HMAC of the same bytes with a key derived from the join token. So the join
token only lets a new key enroll; from then on the gateway knows the worker by
its key (``gateway.enrollments``), and nothing the other token holders have
lets them speak for it.

The checks come in two steps so that nothing unauthenticated takes memory:
``authenticate`` is stateless (shape, freshness, signature); the caller then
checks the key is the one bound to the id, and only then ``remember`` records
the nonce (refusing replays) and spends the identity's message allowance.
Every nonce is kept for the whole freshness window; memory is bounded by each
identity's allowance, never by forgetting a fresh nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from routing.errors import Busy, Unauthorized
from routing.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, from_text, to_text, verify
from routing.key_handover import handed_over_by

TIMESTAMP = "x-infercdn-timestamp"
NONCE = "x-infercdn-nonce"
WORKER = "x-infercdn-worker"
KEY = "x-infercdn-key"
SIGNATURE = "x-infercdn-signature"
ENROLL = "x-infercdn-enroll"
HANDOVER = "x-infercdn-handover"  # on registrations after a key rotation (``routing.key_handover``)

ENROLLMENT = "infercdn enroll v1"
MAX_NONCE_LENGTH = 64
MAX_WORKER_ID_LENGTH = 128


def derive_key(join_token: str, purpose: str) -> bytes:
    return hmac.new(join_token.encode(), purpose.encode(), hashlib.sha256).digest()


def _canonical(method: str, path: str, timestamp: str, nonce: str, worker_id: str, key: str, body: bytes) -> bytes:
    # Every field is header-safe text without newlines (checked before this is built), so the join is unambiguous.
    return f"infercdn v2\n{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{worker_id}\n{key}\n".encode() + body


def _proof(join_key: bytes, canonical: bytes) -> str:
    return hmac.new(join_key, canonical, hashlib.sha256).hexdigest()


class Signer:
    """A worker's side: its identity signs; the join token proves enrollment where asked."""

    def __init__(self, identity: Identity, worker_id: str, join_token: str, *, handover: str = ""):
        self._identity = identity
        self._worker_id = worker_id
        self._join_key = derive_key(join_token, ENROLLMENT) if join_token else b""
        self._handover = handover  # the previous key's handover to this one, if the key was rotated

    def headers(self, method: str, path: str, body: bytes, now: float, *, enroll: bool = False) -> dict[str, str]:
        timestamp, nonce, key = str(int(now)), secrets.token_hex(16), self._identity.public_text
        canonical = _canonical(method, path, timestamp, nonce, self._worker_id, key, body)
        headers = {
            TIMESTAMP: timestamp,
            NONCE: nonce,
            WORKER: self._worker_id,
            KEY: key,
            SIGNATURE: to_text(self._identity.sign(canonical)),
        }
        if enroll and self._join_key:
            headers[ENROLL] = _proof(self._join_key, canonical)
        if enroll and self._handover:
            headers[HANDOVER] = self._handover
        return headers


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """A message whose signature checked out: who signed it, and whether it proved the join token."""

    worker_id: str
    public_key: bytes
    nonce: str
    expires_at: float  # when its nonce stops mattering
    enrollment_proven: bool = False
    handed_over_by: bytes = b""  # the previous key, when the message carries its signed handover to this one


@dataclass(slots=True)
class _Allowance:
    level: float
    stamp: float


class Verifier:
    def __init__(
        self,
        join_token: str,
        *,
        max_skew_s: float = 30.0,
        messages_per_second: float = 5.0,
        burst: int = 20,
        max_nonces: int = 1_000_000,
    ):
        self._join_key = derive_key(join_token, ENROLLMENT)
        self._max_skew_s = max_skew_s
        self._rate = messages_per_second
        self._burst = burst
        self._max_nonces = max_nonces  # a last fuse; the allowances keep far below it
        self._seen: OrderedDict[tuple[bytes, str], float] = OrderedDict()  # (key, nonce) → when it stops mattering
        self._allowances: dict[bytes, _Allowance] = {}

    def authenticate(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, now: float
    ) -> SignedMessage:
        """Raise Unauthorized unless the message is well formed, fresh and signed by the key it names."""
        timestamp, nonce = headers.get(TIMESTAMP, ""), headers.get(NONCE, "")
        worker_id, key_text, signature_text = headers.get(WORKER, ""), headers.get(KEY, ""), headers.get(SIGNATURE, "")
        if not (timestamp and nonce and worker_id and key_text and signature_text):
            raise Unauthorized("This endpoint needs a message signed with the worker's key.", code="unsigned")
        public_key = from_text(key_text, PUBLIC_KEY_BYTES)
        signature = from_text(signature_text, SIGNATURE_BYTES)
        if public_key is None or signature is None:
            raise Unauthorized("The worker key or signature is malformed.", code="bad_signature")
        if not (_plain(nonce, MAX_NONCE_LENGTH) and _plain(worker_id, MAX_WORKER_ID_LENGTH)):
            raise Unauthorized("The nonce or worker id is malformed.", code="bad_signature")
        # Whole seconds only: "nan" or "inf" would pass any window check and expire at once (replayable).
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise Unauthorized("The timestamp must be whole seconds.", code="bad_signature")
        canonical = _canonical(method, path, timestamp, nonce, worker_id, key_text, body)
        if not verify(public_key, signature, canonical):
            raise Unauthorized("The signature does not match the worker key.", code="bad_signature")
        sent = float(timestamp)
        if abs(now - sent) > self._max_skew_s:
            raise Unauthorized("The message is stale (check the clocks).", code="stale_message")
        proof = headers.get(ENROLL, "")
        proven = bool(proof) and hmac.compare_digest(proof.encode(), _proof(self._join_key, canonical).encode())
        return SignedMessage(
            worker_id,
            public_key,
            nonce,
            sent + self._max_skew_s,
            proven,
            handover_in(headers.get(HANDOVER), public_key),
        )

    def remember(self, message: SignedMessage, now: float) -> None:
        """Refuse a replay, and an identity past its allowance; else keep the nonce for its window."""
        self._forget_expired(now)
        seen = (message.public_key, message.nonce)
        if seen in self._seen:
            raise Unauthorized("This message was already received (replay).", code="replayed_message")
        allowance = self._allowances.get(message.public_key)
        if allowance is None:
            allowance = self._allowances[message.public_key] = _Allowance(float(self._burst), now)
        allowance.level = min(float(self._burst), allowance.level + (now - allowance.stamp) * self._rate)
        allowance.stamp = now
        if allowance.level < 1 or len(self._seen) >= self._max_nonces:
            raise Busy("Too many signed messages from this worker; slow down.", retry_after_s=1)
        allowance.level -= 1
        # Senders' clocks differ, so insertion order is expiry order only roughly: the sweep stops at
        # the first fresh one, and never drops a fresh one.
        self._seen[seen] = message.expires_at

    def _forget_expired(self, now: float) -> None:
        while self._seen:
            nonce, until = next(iter(self._seen.items()))
            if until >= now:
                return
            del self._seen[nonce]
        # Allowances refill fully within burst / rate seconds; a full one carries no information.
        if len(self._allowances) > 1024:
            full = now - self._burst / self._rate
            self._allowances = {k: a for k, a in self._allowances.items() if a.stamp > full}


def handover_in(text: str | None, public_key: bytes) -> bytes:
    """The key that handed over to ``public_key``, from a handover's text (b"" when there is none)."""
    if not text:
        return b""
    old_key = handed_over_by(text, public_key)
    if old_key is None:
        raise Unauthorized("The key handover is malformed or not signed by the key it names.", code="bad_handover")
    return old_key


def _plain(text: str, max_length: int) -> bool:
    return 0 < len(text) <= max_length and text.isascii() and text.isprintable() and "\n" not in text
