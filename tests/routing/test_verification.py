"""The gateway ↔ verifier wire: a score request round-trips, and what a verifier is sent is bounded."""

from __future__ import annotations

from typing import Any

import pytest

from routing.errors import InvalidRequest
from routing.openai_requests import parse_chat_request
from routing.openai_tools import MAX_TOOL_CALLS
from routing.verification import DeliveredCall, ScoreRequest, scorable

JOB = ScoreRequest({"model": "m"}, (1, 2), (3,), 2, "", (DeliveredCall("weather", '{"city": "Paris"}'),))


def test_a_score_request_round_trips_with_its_calls() -> None:
    assert ScoreRequest.from_json(JOB.to_json()) == JOB
    older = {k: v for k, v in JOB.to_json().items() if k != "calls"}  # from a gateway that sends none
    assert ScoreRequest.from_json(older).calls == ()


@pytest.mark.parametrize(
    "calls",
    [
        "weather",
        [{"name": "weather"}],
        [{"name": "weather", "arguments": {"city": "Paris"}}],  # arguments are JSON text, as OpenAI sends them
        [{"name": "w\n", "arguments": "{}"}],
        [{"name": "w" * 65, "arguments": "{}"}],
        [{"name": "w", "arguments": "{}"}] * (MAX_TOOL_CALLS + 1),
    ],
)
def test_malformed_calls_are_refused_naming_the_field(calls: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        ScoreRequest.from_json({**JOB.to_json(), "calls": calls})
    assert "malformed" in caught.value.message or caught.value.param == "calls"


GREEDY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 8}


@pytest.mark.parametrize(
    ("extra", "on_vllm"),
    [
        ({}, True),
        ({"stream": True, "stop": ["\n"], "seed": 3, "logprobs": True, "top_logprobs": 2}, True),
        ({"temperature": 0.7}, True),  # sampled: a Z over the likeliest tokens (top_logprobs_z.py)
        ({"temperature": 1.0, "top_p": 1.0}, True),
        ({"temperature": 0.7, "top_p": 0.9}, False),  # the cut needs every token's probability, not the top 20
        ({"top_p": 0.9}, True),  # greedy: no cut to make
        ({"frequency_penalty": 0.5}, False),
        ({"response_format": {"type": "json_object"}}, False),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, False),
        ({"repetition_penalty": 1.2}, False),  # vLLM's own sampling extras
        ({"top_k": 5}, False),
    ],
)
def test_a_vllm_reference_scores_plain_answers_without_top_p_and_a_llama_cpp_one_every_answer(
    extra: dict[str, Any], on_vllm: bool
) -> None:
    body = {**GREEDY, **extra}
    request = parse_chat_request({k: v for k, v in body.items() if k not in ("repetition_penalty", "top_k")})
    assert scorable("vllm", body, request) is on_vllm
    assert scorable("llama.cpp", body, request)
