"""JSON from strangers: nesting, non-finite constants and lone surrogates are ValueErrors, not crashes."""

from __future__ import annotations

import json

import pytest

from routing.json_limits import MAX_DEPTH, JsonTooDeep, loads_bounded


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
    "raw",
    [b'{"c": "\\ud800"}', b'{"c": ["ok", {"\\udfff": 1}]}', b'{"c": "\xed\xa0\x80"}', b'{"c": "\xff"}'],
)
def test_strings_that_are_not_valid_unicode_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        loads_bounded(raw)


def test_escaped_surrogate_pairs_are_fine() -> None:
    assert loads_bounded(b'{"c": "\\ud83d\\ude00"}') == {"c": "\U0001f600"}
    assert loads_bounded('{"c": "😀 é"}'.encode()) == {"c": "😀 é"}
