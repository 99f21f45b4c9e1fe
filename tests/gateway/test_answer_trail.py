"""What the gateway keeps of an answer for an audit: the first choice's content and tool calls, as sent."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.answer_trail import AnswerTrail
from routing.sse import SseEvent
from routing.verification import DeliveredCall


def event(delta: dict[str, Any], index: int = 0, finish: str | None = None) -> SseEvent:
    data = {"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    return SseEvent(b"", data)


def call_piece(index: int, arguments: str, name: str | None = None) -> dict[str, Any]:
    function = {"arguments": arguments} | ({"name": name} if name else {})
    return {"tool_calls": [{"index": index, "function": function}]}


def test_streamed_calls_are_put_together_by_index_and_other_choices_are_left_out() -> None:
    trail = AnswerTrail(collect=True)
    for e in (
        event(call_piece(0, '{"city": ', "weather")),  # a named function's arguments stream in pieces
        event(call_piece(0, '"Paris"}')),
        event(call_piece(0, '{"city": "Oslo"}', "weather"), index=1),  # another choice: not followed
        event(call_piece(1, '{"zone": "UTC"}', "time_in")),
        event(call_piece(500, "{}", "junk")),  # no client takes a call index like that either
        event({}, finish="tool_calls"),
    ):
        trail.from_event(e)
    assert trail.calls == (DeliveredCall("weather", '{"city": "Paris"}'), DeliveredCall("time_in", '{"zone": "UTC"}'))
    assert trail.text == "" and trail.finish_reason == "tool_calls"


def test_a_whole_answer_gives_its_content_or_its_calls() -> None:
    calls = [
        {"id": "a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "b", "type": "function", "function": {"name": "time_in", "arguments": "{}"}},
    ]
    answer: dict[str, Any] = {"choices": [{"index": 0, "message": {"content": None, "tool_calls": calls}}]}
    trail = AnswerTrail(collect=True)
    trail.strip(answer, orjson.dumps(answer))
    assert trail.calls == (DeliveredCall("weather", '{"city": "Paris"}'), DeliveredCall("time_in", "{}"))
    assert trail.text == ""
    spoken: dict[str, Any] = {"choices": [{"index": 0, "message": {"content": "Sunny."}, "finish_reason": "stop"}]}
    trail = AnswerTrail(collect=True)
    trail.strip(spoken, orjson.dumps(spoken))
    assert trail.calls == () and trail.text == "Sunny." and trail.finish_reason == "stop"
