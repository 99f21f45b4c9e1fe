"""What the gateway saw of one answer: for an audit, the worker's sealed record and the content and tool calls
the client was sent; for the key's limits, how much text it relayed (what a request costs when the worker reports
no usage).

The record never reaches the client: a stream's is an SSE comment (comments
are not relayed), a whole answer's a field taken out of the body here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from routing.audit_record import AUDIT_FIELD
from routing.openai_tools import MAX_TOOL_CALLS
from routing.sse import SseEvent
from routing.suitability import CHARS_PER_TOKEN
from routing.verification import DeliveredCall

# Longer than any real token's text (runs of spaces or dashes are the longest, well under this).
MAX_CHARS_PER_TOKEN = 128


@dataclass(slots=True)
class AnswerTrail:
    collect: bool = False  # keep the text (only requests that may be audited pay for it)
    sealed: str | None = None
    parts: list[str] = field(default_factory=list)  # the first choice's content
    call_parts: dict[int, _CallParts] = field(default_factory=dict)  # its tool calls, by index
    finish_reason: str = ""
    ended: bool = False  # the whole answer arrived (a stream's [DONE], a whole body)
    relayed_pieces: int = 0  # stream events that carried text, over every choice
    relayed_chars: int = 0  # characters of text relayed, over every choice

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def calls(self) -> tuple[DeliveredCall, ...]:
        return tuple(
            DeliveredCall(self.call_parts[i].name, "".join(self.call_parts[i].arguments))
            for i in sorted(self.call_parts)
        )

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
        piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if isinstance(piece, str):
            self.parts.append(piece)
        if isinstance(delta, dict):
            self._take_calls(delta)
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
                text = message.get("content") if isinstance(message, dict) else choice.get("text")
                self.parts = [text] if isinstance(text, str) else []
                self.call_parts = {}
                if isinstance(message, dict):
                    self._take_calls(message)
                reason = choice.get("finish_reason")
                self.finish_reason = reason if isinstance(reason, str) else ""
        return payload if sealed is None else orjson.dumps(answer)

    def _take_calls(self, holder: dict[str, Any]) -> None:
        """Tool calls as they come: a call's first piece names it, the arguments may come in pieces."""
        for index, name, arguments in _calls_in(holder):
            if not 0 <= index < MAX_TOOL_CALLS:
                continue  # not a call any client could take either; the text check will find it missing
            parts = self.call_parts.setdefault(index, _CallParts())
            if isinstance(name, str) and name:
                parts.name = name
            if isinstance(arguments, str):
                parts.arguments.append(arguments)

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


@dataclass(slots=True)
class _CallParts:
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def _calls_in(holder: dict[str, Any]) -> list[tuple[int, Any, Any]]:
    """(index, name, arguments piece) of each tool call in a message or a stream's delta, as sent."""
    calls = holder.get("tool_calls")
    found = []
    for position, call in enumerate(calls if isinstance(calls, list) else ()):
        if not isinstance(call, dict):
            continue
        index = call.get("index", position)  # a whole message's calls carry none: their order is theirs
        function = call.get("function")
        if isinstance(index, int) and isinstance(function, dict):
            found.append((index, function.get("name"), function.get("arguments")))
    return found
