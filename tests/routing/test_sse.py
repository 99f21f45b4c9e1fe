"""SSE from workers: whole events out of any chunking, and anything that is not OpenAI SSE refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.sse import SSE_DONE, BrokenStream, SseReader, error_event
from routing.usage import MAX_REPORTED_TOKENS, Usage

USAGE_EVENT = b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":11}}\n\n'


def test_a_usage_event_split_across_reads_is_one_event_and_counted() -> None:
    reader, usage = SseReader(), Usage()
    cut = USAGE_EVENT.index(b"completion")
    assert reader.feed(USAGE_EVENT[:cut]) == []
    assert reader.pending
    (event,) = reader.feed(USAGE_EVENT[cut:])
    assert event.raw == USAGE_EVENT
    assert usage.from_event(event)
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 11)
    assert not reader.pending


def test_done_comments_and_the_worker_usage_comment() -> None:
    events = SseReader().feed(b': keep-alive\n\n: usage {"prompt_tokens":3,"completion_tokens":4}\n\n' + SSE_DONE)
    assert [e.comment for e in events] == [True, True, False]
    assert events[0].usage_comment is None
    assert events[1].usage_comment == {"prompt_tokens": 3, "completion_tokens": 4}
    assert events[2].done and events[2].raw == SSE_DONE


def test_crlf_line_ends_are_events_too() -> None:
    (event,) = SseReader().feed(b'data: {"a":1}\r\n\r\n')
    assert event.data == {"a": 1}
    assert event.raw == b'data: {"a":1}\n\n'


@pytest.mark.parametrize(
    "stream",
    [
        b"data: {not json}\n\n",
        b"data: [1, 2]\n\n",
        b"data: NaN\n\n",
        b"event: message\ndata: {}\n\n",
        b"<html>oops</html>\n\n",
    ],
)
def test_what_is_not_openai_sse_is_a_broken_stream(stream: bytes) -> None:
    with pytest.raises(BrokenStream):
        SseReader().feed(stream)


def test_an_event_that_never_ends_is_bounded() -> None:
    reader = SseReader(max_event_bytes=1000)
    reader.feed(b"data: " + b"x" * 900)
    with pytest.raises(BrokenStream):
        reader.feed(b"x" * 200)


def test_the_error_event_ends_with_done() -> None:
    out = error_event({"error": {"message": "m"}})
    first, rest = out.split(b"\n\n", 1)
    assert json.loads(first[len(b"data: ") :]) == {"error": {"message": "m"}}
    assert rest == SSE_DONE


# orjson reads integers outside 64 bits as floats; the relay forwards the worker's bytes as sent either way.
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)


@given(
    st.lists(st.dictionaries(st.text(max_size=5), INT64 | st.text(max_size=8), max_size=3), max_size=6),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20),
)
def test_any_chunking_gives_back_the_same_events(objects: list[dict[str, object]], cuts: list[int]) -> None:
    wire = b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objects) + SSE_DONE
    reader, events, at, i = SseReader(), [], 0, 0
    while at < len(wire):
        size = cuts[i % len(cuts)]
        events += reader.feed(wire[at : at + size])
        at, i = at + size, i + 1
    assert [e.data for e in events[:-1]] == objects
    assert events[-1].done
    assert b"".join(e.raw for e in events) == wire


@pytest.mark.parametrize(
    ("reported", "counted"),
    [((-5, 3), (0, 3)), ((10**15, 2), (MAX_REPORTED_TOKENS, 2)), ((True, 2), (0, 0)), ((1.5, 2), (0, 0))],
)
def test_usage_from_workers_is_clamped_or_ignored(reported: tuple[object, object], counted: tuple[int, int]) -> None:
    usage = Usage()
    usage.read({"usage": {"prompt_tokens": reported[0], "completion_tokens": reported[1]}})
    assert (usage.prompt_tokens, usage.completion_tokens) == counted
