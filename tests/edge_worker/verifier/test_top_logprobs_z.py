"""The top-logprobs Z, by simulation: honest draws give about N(0, 1), draws from other weights fall below 0.

Each simulated position has fresh random logits over a small vocabulary; the
"reference" lists the top K raw log-probabilities and the drawn token's, as
vLLM's prompt logprobs do; the worker draws at the request's temperature, from
those logits (honest) or from perturbed ones (other weights).
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from edge_worker.verifier.top_logprobs_z import Listed, TopLogprobsZ

VOCAB, K, POSITIONS, ANSWERS = 400, 20, 30, 300


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def listed(reference: np.ndarray, token: int) -> Listed:
    top = np.argsort(-reference)[:K]
    return Listed(tuple(float(x) for x in reference[top]), float(reference[token]), bool(token in top))


def answer_z(rng: np.random.Generator, temperature: float, drift: float) -> tuple[float, int]:
    tally = TopLogprobsZ(temperature)
    for _ in range(POSITIONS):
        logits = rng.normal(0.0, 2.5, VOCAB)
        worker = logits + rng.normal(0.0, drift, VOCAB) if drift else logits
        q = np.exp(log_softmax(worker / temperature))
        token = int(rng.choice(VOCAB, p=q))
        tally.add(listed(log_softmax(logits), token))
    return tally.z, tally.positions


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3])
def test_honest_draws_give_about_a_standard_normal_z(temperature: float) -> None:
    rng = np.random.default_rng(17)
    zs = [answer_z(rng, temperature, 0.0)[0] for _ in range(ANSWERS)]
    # The mean of 300 N(0, 1) draws is within ±0.23 with probability 1 - 1e-4.
    assert abs(statistics.mean(zs)) < 0.23, statistics.mean(zs)
    assert 0.85 < statistics.stdev(zs) < 1.15, statistics.stdev(zs)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3])
def test_draws_from_other_weights_fall_below_zero(temperature: float) -> None:
    rng = np.random.default_rng(18)
    zs = [answer_z(rng, temperature, 1.5)[0] for _ in range(ANSWERS)]
    # Beyond the honest bound above; this flat vocabulary keeps only some 50 % (at temperature 1) of what the
    # whole distribution would show (-0.58 against -1.22), a real model's peakier rows more.
    assert statistics.mean(zs) < -0.3, statistics.mean(zs)


def test_at_temperature_1_a_draw_outside_the_top_counts_in_the_tail_and_elsewhere_is_skipped() -> None:
    top = tuple(float(x) for x in np.log(np.full(K, 0.04)))  # the top 20 hold 80 %; the tail 20 %
    outside = Listed(top, chosen=float(np.log(0.001)), chosen_in_top=False)
    at_1, at_07 = TopLogprobsZ(1.0), TopLogprobsZ(0.7)
    at_1.add(outside)
    at_07.add(outside)
    assert at_1.positions == 1 and at_07.positions == 0
    # Landing in the tail (20 %) is likelier than landing on any one listed token (4 %): above 0, not below.
    assert at_1.z > 0
    inside = Listed(top, chosen=top[0], chosen_in_top=True)
    at_07.add(inside)
    assert at_07.positions == 1 and at_07.z == pytest.approx(0.0, abs=1e-9)  # all alike: no information


def test_a_tail_rounded_to_nothing_still_scores_a_draw_from_it() -> None:
    top = (0.0,) * 1  # one token holds everything, as rounded
    tally = TopLogprobsZ(1.0)
    tally.add(Listed(top, chosen=-30.0, chosen_in_top=False))
    assert tally.positions == 1 and tally.z < -5  # very unlikely, never log 0
