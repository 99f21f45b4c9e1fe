"""A vLLM reference's gap at one position, from the prompt logprobs vLLM returns (its real answers are scored in
tests/edge_worker/runtimes/vllm/test_vllm_audits.py, where vLLM is installed)."""

from __future__ import annotations

from edge_worker.verifier.vllm_reference import _gap
from routing.verification import IMPOSSIBLE_GAP


def entry(logprob: float, rank: int) -> dict[str, object]:
    return {"logprob": logprob, "rank": rank, "decoded_token": "x"}


def test_the_gap_is_the_likeliest_tokens_log_probability_less_the_chosen_ones() -> None:
    assert _gap({"504": entry(-0.2, 1)}, 504) == 0.0  # the likeliest: vLLM lists it alone
    assert abs(_gap({"7": entry(-3.0, 4), "504": entry(-0.5, 1)}, 7) - 2.5) < 1e-9
    assert _gap({"504": entry(-0.2, 1)}, 7) == IMPOSSIBLE_GAP  # not listed: vLLM did not score that token
    assert _gap({"7": entry(float("-inf"), 9000), "504": entry(-0.1, 1)}, 7) == IMPOSSIBLE_GAP
    assert _gap(None, 7) == IMPOSSIBLE_GAP
