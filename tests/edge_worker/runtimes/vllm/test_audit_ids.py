"""The ids behind a vLLM answer: taken out of what the client gets, and named as the record names them."""

from __future__ import annotations

from typing import Any

from edge_worker.runtimes.vllm.audit_ids import AnswerIds
from routing.audit_record import ChoiceIds

EOS = 2


def chunk(index: int, ids: list[int], finish: str | None = None, stop_reason: Any = None) -> dict[str, Any]:
    choice = {"index": index, "delta": {"content": "x"}, "token_ids": ids, "finish_reason": finish}
    if finish is not None:
        choice["stop_reason"] = stop_reason
    return {"choices": [choice]}


def test_a_stream_gives_each_choice_its_ids_and_the_end_token_it_stopped_on() -> None:
    ids = AnswerIds()
    first = {"prompt_token_ids": [1, 2, 3], "prompt_text": None, "choices": [{"index": 0, "delta": {}}]}
    events = [
        first,
        chunk(0, [10]),
        chunk(1, [20]),
        chunk(0, [11, EOS], "stop"),  # vLLM's own end-of-sequence: the last id, counted in its usage
        chunk(1, [21], "stop", stop_reason="\n\n"),  # a client's stop string: every id is the answer's
        chunk(2, [30, 31], "length"),
    ]
    for event in events:
        ids.take(event)
    assert ids.prompt == [1, 2, 3]
    assert ids.choices() == [ChoiceIds((10, 11), EOS), ChoiceIds((20, 21)), ChoiceIds((30, 31))]
    assert "prompt_token_ids" not in first and "prompt_text" not in first  # the client did not ask
    assert all("token_ids" not in c for e in events for c in e["choices"])


def test_a_client_that_asked_for_the_ids_keeps_them() -> None:
    ids = AnswerIds(keep=True)
    answer = {"prompt_token_ids": [1, 2], "choices": [{"index": 0, "token_ids": [5, EOS], "finish_reason": "stop"}]}
    ids.take(answer)
    assert answer["prompt_token_ids"] == [1, 2] and answer["choices"][0]["token_ids"] == [5, EOS]
    assert ids.prompt == [1, 2] and ids.choices() == [ChoiceIds((5,), EOS)]


def test_what_is_not_an_id_is_never_taken_as_one() -> None:
    ids = AnswerIds()
    ids.take(
        {"prompt_token_ids": "1,2", "choices": [{"index": "0", "token_ids": [1]}, {"index": 999, "token_ids": [1]}]}
    )
    ids.take({"choices": [{"index": 0, "token_ids": [7, "x", -5, 2**40]}]})
    assert ids.prompt == [] and ids.choices() == [ChoiceIds((7, -1, -1, -1))]  # -1: a record no gateway takes
