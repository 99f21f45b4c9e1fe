"""What a worker says it computed: the token ids behind one answer, signed with its own key.

Every request a gateway sends carries ``ASK_HEADER`` (every one, so a worker
cannot tell which answers will be checked). An InferCDN worker then returns,
to the gateway only, an *audit record*: the exact prompt token ids it read
(the rendered prompt) and, per choice, the completion ids it sampled and the
end-of-generation token where it stopped on one. A stream carries it in an
SSE comment before ``[DONE]`` (``AUDIT_COMMENT``; the gateway relays no
comments); a whole answer in the ``AUDIT_FIELD`` field, which the gateway
removes before the client sees the body.

The record is msgpack, ``[version, request_id, worker_id, model, prompt,
[[completion, end_token], ...]]``, sealed as ``base64url(record) "."
base64url(signature)``: Ed25519 over ``SEAL_CONTEXT`` and the record's bytes,
by the worker's own key, so evidence of a cheat is the cheat's own word. A
worker without a key (operator-configured, not registered) sends an empty
signature. Everything is bounded: it comes from a stranger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from routing.bounds import printable
from routing.errors import InvalidRequest
from routing.sealing import seal_bytes, signed, unseal_bytes

ASK_HEADER = "x-infercdn-audit"
AUDIT_COMMENT = b": audit "
AUDIT_FIELD = "infercdn_audit"
SEAL_CONTEXT = b"infercdn audit record v1\n"
VERSION = 1

MAX_IDS = 1 << 18  # per prompt or completion: more than any context window served here
MAX_CHOICES = 128
MAX_TOKEN_ID = (1 << 31) - 1
MAX_SEALED_CHARS = 8 << 20


@dataclass(frozen=True, slots=True)
class ChoiceIds:
    completion: tuple[int, ...]  # the sampled tokens, in order (what ``usage.completion_tokens`` counts)
    end_token: int | None = None  # the end-of-generation token it stopped on, if it did (not counted)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    request_id: str
    worker_id: str
    model: str
    prompt: tuple[int, ...]
    choices: tuple[ChoiceIds, ...]

    def to_bytes(self) -> bytes:
        choices = [[list(c.completion), c.end_token] for c in self.choices]
        obj = [VERSION, self.request_id, self.worker_id, self.model, list(self.prompt), choices]
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.completion) for c in self.choices)


@dataclass(frozen=True, slots=True)
class SealedRecord:
    record: AuditRecord
    signature: bytes  # empty: unsigned (a worker with no key of its own)


def seal(record: AuditRecord, sign: Callable[[bytes], bytes] | None) -> str:
    return seal_bytes(record.to_bytes(), SEAL_CONTEXT, sign)


def unseal(text: str) -> SealedRecord:
    """The record a worker sent, every field bounded; InvalidRequest if it is not one. Not yet verified."""
    obj, _, signature = unseal_bytes(text, "an audit record", max_chars=MAX_SEALED_CHARS, max_array_len=MAX_IDS)
    return SealedRecord(_record(obj), signature)


def signed_by(sealed: SealedRecord, public_key: bytes) -> bool:
    return signed(public_key, sealed.signature, SEAL_CONTEXT, sealed.record.to_bytes())


def _record(obj: Any) -> AuditRecord:
    if not isinstance(obj, list) or len(obj) != 6 or obj[0] != VERSION:
        raise InvalidRequest("an audit record of an unknown shape or version")
    _, request_id, worker_id, model, prompt, choices = obj
    if not isinstance(choices, list) or not 1 <= len(choices) <= MAX_CHOICES:
        raise InvalidRequest(f"an audit record must hold 1 to {MAX_CHOICES} choices")
    return AuditRecord(
        request_id=printable(request_id, "request_id", 128),
        worker_id=printable(worker_id, "worker_id", 128),
        model=printable(model, "model", 128),
        prompt=_ids(prompt, "prompt"),
        choices=tuple(_choice(c) for c in choices),
    )


def _choice(obj: Any) -> ChoiceIds:
    if not isinstance(obj, list) or len(obj) != 2:
        raise InvalidRequest("an audit record's choice must be [completion ids, end token]")
    completion, end = obj
    if end is not None and not _token(end):
        raise InvalidRequest("an audit record's end token must be a token id or nil")
    return ChoiceIds(_ids(completion, "completion"), end)


def _ids(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_IDS or not all(_token(t) for t in value):
        raise InvalidRequest(f"an audit record's {name} must be a list of at most {MAX_IDS} token ids")
    return tuple(value)


def _token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_ID
