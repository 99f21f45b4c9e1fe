"""JSON from strangers: nesting, non-finite constants and lone surrogates are ValueErrors, not crashes."""

from __future__ import annotations

import json

import pytest

from routing.json_limits import MAX_DEPTH, JsonTooDeep, loads_bounded, lone_surrogate_in


def test_nesting_up_to_the_limit_parses() -> None:
    doc = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_bounded(doc) is not None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 100_000])
def test_deeper_nesting_is_refused_without_recursion_errors(depth: int) -> None:
    with pytest.raises(JsonTooDeep):
        loads_bounded(b'{"a":' * depth + b"1" + b"}" * depth)


def test_many_flat_brackets_are_not_deep() -> None:
    doc = json.dumps({"messages": [{"role": "user", "content": "x"}] * 500})
    assert len(loads_bounded(doc)["messages"]) == 500


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b'{"t": NaN}'])
def test_non_finite_constants_are_refused(constant: bytes) -> None:
    with pytest.raises(ValueError):
        loads_bounded(constant)


@pytest.mark.parametrize(
    ("raw", "lone"),
    [
        (b'{"c": "\\ud83d\\ude00"}', False),  # an escaped pair: an emoji
        ('{"c": "😀 é"}'.encode(), False),
        (b'{"c": "\\ud800"}', True),
        (b'{"c": ["ok", {"\\udfff": 1}]}', True),  # in a key, deep down
        (b'{"c": "\xed\xa0\x80"}', True),  # a surrogate encoded as UTF-8 bytes
    ],
)
def test_lone_surrogates_are_found(raw: bytes, lone: bool) -> None:
    assert lone_surrogate_in(raw, json.loads(raw)) is lone
