"""Server-sent events as OpenAI-compatible servers send them, checked one whole event at a time.

A stream from a worker is untrusted input. ``SseReader`` reassembles events
from network chunks however they were split (an event split across two TCP
reads is still one event), bounds how much it holds while an event is
incomplete, and checks each event: only ``data:`` lines carrying a JSON
object or ``[DONE]``, or comment lines. Anything else is a broken stream,
which the relay ends with an error event and ``[DONE]`` (``error_event``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from routing.audit_record import AUDIT_COMMENT
from routing.json_limits import loads_bounded
from routing.wire import USAGE_COMMENT

SSE_DONE = b"data: [DONE]\n\n"
CONTENT_TYPE = "text/event-stream"
_DATA = b"data:"
_END = b"\n\n"


class BrokenStream(ValueError):
    """The stream is not OpenAI-shaped SSE; the message says how, for logs."""


@dataclass(slots=True)  # not frozen: one is made per streamed token, and frozen ones cost more to make
class SseEvent:
    raw: bytes  # as the worker sent it (line ends normalised to \n), with its closing blank line
    data: dict[str, Any] | None = None  # the JSON object of a data event
    done: bool = False  # data: [DONE]
    usage_comment: dict[str, Any] | None = None  # an InferCDN worker's ": usage {…}" comment
    audit: str | None = None  # an InferCDN worker's sealed audit record (``routing.audit_record``)

    @property
    def comment(self) -> bool:
        return self.data is None and not self.done


class SseReader:
    """Whole, checked events out of arbitrary chunks; at most ``max_event_bytes`` held pending."""

    def __init__(self, max_event_bytes: int = 1 << 20):
        self._pending = b""
        self._max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events this chunk completes; ``BrokenStream`` for anything that is not OpenAI SSE."""
        if b"\r" in chunk or self._pending.endswith(b"\r"):
            # SSE allows CRLF and CR line ends; one form is enough to check and relay.
            chunk = (self._pending + chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self._pending = b""
        data = self._pending + chunk if self._pending else chunk
        *blocks, self._pending = data.split(_END)
        if len(self._pending) > self._max_event_bytes:
            raise BrokenStream(f"an event longer than {self._max_event_bytes} bytes")
        return [parse_event(block) for block in blocks if block.strip(b"\n")]

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished event are held (at the end of a stream: it was cut off)."""
        return bool(self._pending.strip(b"\n"))


def parse_event(block: bytes) -> SseEvent:
    """One event's lines (without the closing blank line)."""
    if block.startswith(b"data: {") and b"\n" not in block:
        # The common case, one token's chunk: one line, one JSON object.
        return SseEvent(block + _END, data=_json_object(block[6:]))
    data_lines: list[bytes] = []
    usage: dict[str, Any] | None = None
    audit: str | None = None
    for line in block.split(b"\n"):
        if line.startswith(_DATA):
            value = line[len(_DATA) :]
            data_lines.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b":"):
            if line.startswith(USAGE_COMMENT):
                usage = _object_or_none(line[len(USAGE_COMMENT) :])
            elif line.startswith(AUDIT_COMMENT):
                audit = line[len(AUDIT_COMMENT) :].decode("ascii", errors="replace")
        elif line:
            raise BrokenStream(f"a line that is neither data nor a comment: {line[:40]!r}")
    raw = block.lstrip(b"\n") + _END
    if not data_lines:
        return SseEvent(raw, usage_comment=usage, audit=audit)
    payload = b"\n".join(data_lines)
    if payload == b"[DONE]":
        return SseEvent(raw, done=True)
    return SseEvent(raw, data=_json_object(payload))


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        obj = loads_bounded(payload)
    except ValueError:
        raise BrokenStream(f"a data event that is not JSON: {payload[:40]!r}") from None
    if not isinstance(obj, dict):
        raise BrokenStream("a data event that is not a JSON object")
    return obj


def data_event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + _END


def error_event(body: dict[str, Any]) -> bytes:
    """How a stream that already started ends on a failure: an error event, then ``[DONE]``."""
    return data_event(body) + SSE_DONE


def _object_or_none(text: bytes) -> dict[str, Any] | None:
    try:
        obj = loads_bounded(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
