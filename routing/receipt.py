"""Usage receipts: what a gateway owes a worker for one request, signed with the gateway's key.

The gateway makes one per request its ledger recorded for a registered
worker and hands them to that worker in its answers to the worker's
heartbeats (the control channel: never in a client's answer). The worker's
heartbeat names the last sequence number it stored from that gateway, so a
receipt lost on the way is sent again, and one sent twice is stored once.

A receipt is msgpack ``[version, seq, entry_id, request_id, worker_id, model,
quantization, status, prompt_tokens, cached_tokens, completion_tokens, at,
gpu_seconds]``, sealed (``routing.sealing``) under ``SEAL_CONTEXT``. It names
nothing secret: no client key, no prompt. Anyone holding the gateway's
public key (``GET /v1/infercdn/keys``) can check it offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import Any

import msgpack

from routing.bounds import bounded_float, bounded_int, printable
from routing.errors import InvalidRequest
from routing.sealing import seal_bytes, signed, unseal_bytes

SEAL_CONTEXT = b"infercdn usage receipt v1\n"
VERSION = 1
KEYS_PATH = "/v1/infercdn/keys"
MAX_RECEIPTS_PER_HEARTBEAT = 256
MAX_SEALED_CHARS = 4096
_MAX_TOKENS = 10_000_000
_MAX_SEQ = (1 << 62) - 1


@dataclass(frozen=True, slots=True)
class Receipt:
    seq: int  # this gateway's ledger order: the worker's cursor
    entry_id: str
    request_id: str
    worker_id: str
    model: str
    quantization: str
    status: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    at: float  # Unix seconds, when the answer ended
    gpu_seconds: float

    def to_bytes(self) -> bytes:
        return msgpack.packb([VERSION, *astuple(self)], use_bin_type=True)  # type: ignore[no-any-return]

    @property
    def served(self) -> bool:
        """Whether the worker delivered an answer (a fleet-side failure is not paid work)."""
        return self.status < 500


@dataclass(frozen=True, slots=True)
class SealedReceipt:
    receipt: Receipt
    signature: bytes
    text: str  # as it came: what the worker keeps, to show anyone


def seal(receipt: Receipt, sign: Callable[[bytes], bytes]) -> str:
    return seal_bytes(receipt.to_bytes(), SEAL_CONTEXT, sign)


def unseal(text: str) -> SealedReceipt:
    """A receipt as a gateway sent it, every field bounded; InvalidRequest if it is not one. Not yet verified."""
    obj, _, signature = unseal_bytes(text, "a usage receipt", max_chars=MAX_SEALED_CHARS, max_array_len=16)
    return SealedReceipt(_receipt(obj), signature, text)


def signed_by(sealed: SealedReceipt, public_key: bytes) -> bool:
    return signed(public_key, sealed.signature, SEAL_CONTEXT, sealed.receipt.to_bytes())


def _receipt(obj: Any) -> Receipt:
    if not isinstance(obj, list) or len(obj) != 13 or obj[0] != VERSION:
        raise InvalidRequest(f"a usage receipt must be a version-{VERSION} list of 13 fields")
    try:
        _, seq, entry_id, request_id, worker_id, model, quantization, status, prompt, cached, completion, at, secs = obj
        return Receipt(
            seq=bounded_int(seq, "seq", 1, _MAX_SEQ),
            entry_id=printable(entry_id, "entry_id", 64, required=True),
            request_id=printable(request_id, "request_id", 128, required=True),
            worker_id=printable(worker_id, "worker_id", 128, required=True),
            model=printable(model, "model", 256),
            quantization=printable(quantization, "quantization", 64),
            status=bounded_int(status, "status", 100, 599),
            prompt_tokens=bounded_int(prompt, "prompt_tokens", 0, _MAX_TOKENS),
            cached_tokens=bounded_int(cached, "cached_tokens", 0, _MAX_TOKENS),
            completion_tokens=bounded_int(completion, "completion_tokens", 0, _MAX_TOKENS),
            at=bounded_float(at, "at", 0.0, 1e11),
            gpu_seconds=bounded_float(secs, "gpu_seconds", 0.0, 1e7),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"a malformed usage receipt: {exc}") from None
