"""What the gateway saw of one answer: for an audit, the worker's sealed record and the text the client was
sent; for the key's limits, how much text it relayed (what a request costs when the worker reports no usage).

The record never reaches the client: a stream's is an SSE comment (comments
are not relayed), a whole answer's a field taken out of the body here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from routing.audit_record import AUDIT_FIELD
from routing.sse import SseEvent
from routing.suitability import CHARS_PER_TOKEN

# Longer than any real token's text (runs of spaces or dashes are the longest, well under this).
MAX_CHARS_PER_TOKEN = 128


@dataclass(slots=True)
class AnswerTrail:
    collect: bool = False  # keep the text (only requests that may be audited pay for it)
    sealed: str | None = None
    parts: list[str] = field(default_factory=list)
    finish_reason: str = ""
    ended: bool = False  # the whole answer arrived (a stream's [DONE], a whole body)
    relayed_pieces: int = 0  # stream events that carried text, over every choice
    relayed_chars: int = 0  # characters of text relayed, over every choice

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def relayed_tokens(self) -> int:
        """The completion tokens the client was sent, as the gateway counts them: an event per token at least,
        and no fewer than the text's length says (a worker cannot pack a long answer into one event)."""
        return max(self.relayed_pieces, -(-self.relayed_chars // CHARS_PER_TOKEN))

    def overran(self, max_completion: int) -> bool:
        """Whether the stream has carried more than ``max_completion`` tokens could: more text events than
        tokens, or more characters than the longest tokens spell."""
        return self.relayed_pieces > max_completion or self.relayed_chars > max_completion * MAX_CHARS_PER_TOKEN

    def from_event(self, event: SseEvent) -> None:
        self.ended = self.ended or event.done
        if event.audit is not None:
            self.sealed = event.audit
        if event.data is None:
            return
        self._count(event.data, "delta")
        if not self.collect:
            return
        choice = _first_choice(event.data)
        if choice is None:
            return
        delta = choice.get("delta")
        piece = _text_of(delta) if isinstance(delta, dict) else choice.get("text")
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
        self._count(answer, "message")
        if self.collect:
            choice = _first_choice(answer)
            if choice is not None:
                message = choice.get("message")
                text = _text_of(message) if isinstance(message, dict) else choice.get("text")
                self.parts = [text] if isinstance(text, str) else []
                reason = choice.get("finish_reason")
                self.finish_reason = reason if isinstance(reason, str) else ""
        return payload if sealed is None else orjson.dumps(answer)

    def _count(self, obj: dict[str, Any], part: str) -> None:
        choices = obj.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            holder = choice.get(part)
            piece = holder.get("content") if isinstance(holder, dict) else choice.get("text")
            if isinstance(piece, str) and piece:
                self.relayed_pieces += 1
                self.relayed_chars += len(piece)


def _first_choice(obj: dict[str, Any]) -> dict[str, Any] | None:
    choices = obj.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict) and choices[0].get("index", 0) == 0:
        return choices[0]
    return None


def _text_of(message: dict[str, Any]) -> Any:
    """What the worker sampled, as the client got it: the content, or a forced call's arguments (verbatim)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    calls = message.get("tool_calls")
    if isinstance(calls, list) and len(calls) == 1 and isinstance(calls[0], dict):
        function = calls[0].get("function")
        if isinstance(function, dict):
            return function.get("arguments")
    return None
