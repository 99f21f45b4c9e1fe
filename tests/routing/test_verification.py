"""The gateway ↔ verifier wire: a score request round-trips, and what a verifier is sent is bounded."""

from __future__ import annotations

from typing import Any

import pytest

from routing.errors import InvalidRequest
from routing.openai_tools import MAX_TOOL_CALLS
from routing.verification import DeliveredCall, ScoreRequest

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
