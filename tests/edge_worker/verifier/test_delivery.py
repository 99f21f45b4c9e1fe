"""What counts as the ids spelling what the client got: content, a named function's arguments, read-back calls."""

from __future__ import annotations

from typing import Any

from edge_worker.verifier.delivery import delivered
from routing.openai_requests import parse_chat_request
from routing.verification import DeliveredCall, ScoreRequest

WEATHER = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
CALL_TEXT = '{"name": "weather", "arguments": {"city":  "Paris"}}'
PARIS = DeliveredCall("weather", '{"city": "Paris"}')


def check(detokenized: str, text: str = "", calls: tuple[DeliveredCall, ...] = (), **body: Any) -> bool:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    job = ScoreRequest(request, (1,), (2,), None, text, calls)
    return delivered(detokenized, job, parse_chat_request(request))


def test_content_is_the_text_up_to_a_stop_string() -> None:
    assert check("Hello there", "Hello there")
    assert check("Hello there\ufffd", "Hello there")  # a stop inside a character the client never saw
    assert check("Hello. The end", "Hello", stop=[". The"])
    assert not check("Hello there", "Hello here")
    assert not check("Hello. The end", "Hello")  # no such stop string was asked for


def test_a_named_function_is_sent_its_arguments_verbatim() -> None:
    forced = {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "weather"}}}
    assert check('{"city": "Paris"}', calls=(PARIS,), **forced)
    assert not check('{"city":"Paris"}', calls=(PARIS,), **forced)  # its text, not a JSON value like it
    assert not check('{"city": "Paris"}', text='{"city": "Paris"}', **forced)  # as content, not a call
    assert not check('{"city": "Paris"}', calls=(DeliveredCall("other", PARIS.arguments),), **forced)
    assert not check('{"city": "Paris"}', calls=(PARIS, PARIS), **forced)


def test_auto_and_required_calls_are_read_back_from_the_text_as_the_worker_reads_them() -> None:
    for mode in ("auto", "required"):
        tools = {"tools": [WEATHER], "tool_choice": mode}
        assert check(CALL_TEXT, calls=(PARIS,), **tools)  # the same value; spacing is the worker's
        assert check(f"[{CALL_TEXT}, {CALL_TEXT}]", calls=(PARIS, PARIS), **tools, parallel_tool_calls=True)
        assert check(CALL_TEXT + "\nDONE more", calls=(PARIS,), stop=["\nDONE"], **tools)
        assert not check(CALL_TEXT, calls=(DeliveredCall("weather", '{"city": "Rome"}'),), **tools)
        assert not check(CALL_TEXT, calls=(DeliveredCall("weather", "not json"),), **tools)
        assert not check(CALL_TEXT, calls=(PARIS, PARIS), **tools)
        assert not check(CALL_TEXT, text="Sure!", calls=(PARIS,), **tools)  # content beside calls
        assert not check("It is sunny.", calls=(PARIS,), **tools)  # the text makes no call
        assert check("It is sunny.", "It is sunny.", **tools)  # an answer that did not become calls
    assert not check(CALL_TEXT, calls=(PARIS,))  # no tools were offered: nothing may be read as a call
