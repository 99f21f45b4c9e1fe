"""/v1/embeddings bodies: what is accepted, and the estimates routing and budgets use."""

from __future__ import annotations

from typing import Any

import pytest

from routing.embedding_requests import MAX_INPUTS, EmbeddingRequest, parse_embedding_request
from routing.errors import InvalidRequest
from routing.suitability import completion_allowance, estimate_prompt_tokens, requirements_of


@pytest.mark.parametrize(
    ("raw", "inputs"),
    [
        ("hello", ("hello",)),
        (["a", "b"], ("a", "b")),
        ([1, 2, 3], ((1, 2, 3),)),  # one input as token ids
        ([[1, 2], [3]], ((1, 2), (3,))),
        (["a", [1]], ("a", (1,))),
    ],
)
def test_every_input_shape_openai_takes_is_read(raw: Any, inputs: tuple[Any, ...]) -> None:
    request = parse_embedding_request({"model": "m", "input": raw})
    assert request == EmbeddingRequest("m", inputs, "float", None)


@pytest.mark.parametrize(
    "body",
    [
        {"input": "x"},
        {"model": "m"},
        {"model": "m", "input": []},
        {"model": "m", "input": [""]},
        {"model": "m", "input": [True]},
        {"model": "m", "input": [[1, -1]]},
        {"model": "m", "input": [["a"]]},
        {"model": "m", "input": {"text": "x"}},
        {"model": "m", "input": ["x"] * (MAX_INPUTS + 1)},
        {"model": "m", "input": "x", "encoding_format": "binary"},
        {"model": "m", "input": "x", "dimensions": 0},
        {"model": "m", "input": "x", "dimensions": True},
    ],
)
def test_bad_bodies_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        parse_embedding_request(body)


def test_each_input_must_fit_the_context_and_all_of_them_are_charged() -> None:
    body = {"model": "m:F16", "input": ["x" * 400, "y" * 40, [1, 2, 3]], "encoding_format": "base64"}
    request = parse_embedding_request(body)
    requirements = requirements_of(body, request)
    assert (requirements.model, requirements.suffix) == ("m", "F16")
    assert requirements.min_context == 100  # the longest input, not the sum
    assert not requirements.needs.generation and requirements.needs.embeddings
    assert estimate_prompt_tokens(request) == 100 + 10 + 3
    assert completion_allowance(request) == 0
