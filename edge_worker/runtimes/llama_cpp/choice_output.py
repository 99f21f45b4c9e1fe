"""One choice's output as it arrives: what a stream may send now, and the whole answer at the end.

Plain text goes out as it comes. Output that may be tool calls is held back
until it is known to be text (then sent, and streamed on) or has ended (then
read as calls and sent as ``tool_calls``). A forced call to a named function
is its arguments as they come, so those stream at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_worker.runtimes.llama_cpp.logprobs import TokenLogprob
from edge_worker.runtimes.llama_cpp.output_plan import OutputPlan
from edge_worker.runtimes.llama_cpp.tool_calls import may_become_call, new_call_id, parse_calls
from routing.openai_tools import FunctionTool, ToolCall


@dataclass(slots=True)
class Piece:
    """What to send of one choice now: a chat ``delta`` (its text for completions) and the logprobs of its tokens."""

    delta: dict[str, Any]
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(slots=True)
class ChoiceOutput:
    plan: OutputPlan
    tools: tuple[FunctionTool, ...] = ()
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    calls: tuple[ToolCall, ...] = ()
    _held: bool = field(default=False, init=False)
    _sent: int = field(default=0, init=False)  # pieces of text already sent
    _sent_logprobs: int = field(default=0, init=False)
    _call_opened: bool = field(default=False, init=False)  # the forced call's id and name went out
    _call_id: str = field(default_factory=new_call_id, init=False)

    def __post_init__(self) -> None:
        self._held = self.plan.may_call

    def take(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> Piece | None:
        """New text of this choice; what to stream now, if anything."""
        self.text.append(text)
        self.logprobs.extend(logprobs)
        if self.plan.function:
            return Piece(self._arguments_delta(text), text)
        if self._held:
            if may_become_call("".join(self.text)):
                return None
            self._held = False
        return self._unsent()

    def finish(self, reason: str) -> tuple[list[Piece], str]:
        """What is left to stream at the end, and the finish reason to report."""
        whole = "".join(self.text)
        if self.plan.function:
            self.calls = (ToolCall(self._call_id, self.plan.function, whole),)
            return [], "tool_calls" if reason == "stop" else reason
        if self._held:
            calls = parse_calls(whole, self.tools)
            if calls is not None:
                self.calls = calls
                return [Piece(_call_delta(i, c)) for i, c in enumerate(calls)], "tool_calls"
        piece = self._unsent()
        return ([piece] if piece is not None else []), reason

    def message(self) -> dict[str, Any]:
        """The whole answer, as a chat response's ``message``."""
        if self.calls:
            return {"role": "assistant", "content": None, "tool_calls": [_call_json(c) for c in self.calls]}
        return {"role": "assistant", "content": "".join(self.text)}

    def _unsent(self) -> Piece | None:
        if self._sent == len(self.text):
            return None
        text = "".join(self.text[self._sent :])
        logprobs = self.logprobs[self._sent_logprobs :]
        self._sent, self._sent_logprobs = len(self.text), len(self.logprobs)
        return Piece({"content": text}, text, logprobs)

    def _arguments_delta(self, text: str) -> dict[str, Any]:
        if not self._call_opened:
            self._call_opened = True
            call = {"index": 0, "id": self._call_id, "type": "function"}
            return {"tool_calls": [{**call, "function": {"name": self.plan.function, "arguments": text}}]}
        return {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}


def _call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _call_delta(index: int, call: ToolCall) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **_call_json(call)}]}
