"""What an audit needs of one answer: the worker's sealed record, and the text the client was sent.

The record never reaches the client: a stream's is an SSE comment (comments
are not relayed), a whole answer's a field taken out of the body here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from routing.audit_record import AUDIT_FIELD
from routing.sse import SseEvent


@dataclass(slots=True)
class AnswerTrail:
    collect: bool = False  # keep the text (only requests that may be audited pay for it)
    sealed: str | None = None
    parts: list[str] = field(default_factory=list)
    finish_reason: str = ""
    ended: bool = False  # the whole answer arrived (a stream's [DONE], a whole body)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def from_event(self, event: SseEvent) -> None:
        self.ended = self.ended or event.done
        if event.audit is not None:
            self.sealed = event.audit
        if not self.collect or event.data is None:
            return
        choice = _first_choice(event.data)
        if choice is None:
            return
        delta = choice.get("delta")
        piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if isinstance(piece, str):
            self.parts.append(piece)
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]

    def strip(self, answer: dict[str, Any], payload: bytes) -> bytes:
        """The body for the client: the record taken out of a whole answer (kept here), the text noted."""
        self.ended = True
        sealed = answer.pop(AUDIT_FIELD, None)
        if isinstance(sealed, str):
            self.sealed = sealed
        if self.collect:
            choice = _first_choice(answer)
            if choice is not None:
                message = choice.get("message")
                text = message.get("content") if isinstance(message, dict) else choice.get("text")
                self.parts = [text] if isinstance(text, str) else []
                reason = choice.get("finish_reason")
                self.finish_reason = reason if isinstance(reason, str) else ""
        return payload if sealed is None else orjson.dumps(answer)


def _first_choice(obj: dict[str, Any]) -> dict[str, Any] | None:
    choices = obj.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict) and choices[0].get("index", 0) == 0:
        return choices[0]
    return None
