"""The tally against draws made the way the worker's sampler makes them (pure numpy, no model)."""

from __future__ import annotations

import numpy as np

from edge_worker.verifier.scoring import Tally

VOCAB = 40


def chain(row: np.ndarray, top_p: float, temperature: float) -> np.ndarray:
    """The worker's chain on these logits: top-p on the probabilities, then temperature (probabilities out)."""
    p = np.exp(row - row.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
    q = np.zeros_like(p)
    q[keep] = np.exp((row[keep] - row[keep].max()) / temperature)
    return q / q.sum()


def worker_draw(rng: np.random.Generator, row: np.ndarray, allowed: np.ndarray, top_p: float, t: float) -> int:
    """Draw as usual; only if the grammar refuses the token, draw again among what it allows."""
    token = int(rng.choice(VOCAB, p=chain(row, top_p, t)))
    if allowed[token]:
        return token
    return int(rng.choice(VOCAB, p=chain(np.where(allowed, row, -np.inf), top_p, t)))


def z_of_honest_answers(rng: np.random.Generator, answers: int, tokens: int) -> list[float]:
    zs = []
    for _ in range(answers):
        # A narrow top-p: the refused draws' redraws often reach tokens the first draw's top-p left out, which is
        # where the worker's two-step draw differs from simply drawing among the allowed (scored that way, these
        # draws read Z = +0.25).
        tally = Tally(temperature=1.0, top_p=0.3)
        for _ in range(tokens):
            row = rng.normal(0, 1.5, VOCAB)
            allowed = rng.random(VOCAB) < 0.5
            allowed[rng.integers(VOCAB)] = True
            tally.add(row.astype(np.float32), worker_draw(rng, row, allowed, 0.3, 1.0), allowed)
        assert tally.z is not None
        zs.append(tally.z)
    return zs


def test_honest_draws_under_a_grammar_give_z_like_a_standard_normal() -> None:
    zs = np.array(z_of_honest_answers(np.random.default_rng(7), answers=300, tokens=20))
    assert abs(zs.mean()) < 0.2 and 0.8 < zs.std() < 1.2, (zs.mean(), zs.std())


def test_a_token_the_grammar_refuses_is_an_impossible_gap() -> None:
    tally = Tally(temperature=0.0)
    allowed = np.zeros(VOCAB, dtype=bool)
    allowed[:5] = True
    row = np.arange(VOCAB, dtype=np.float32)
    tally.add(row, 4, allowed)  # the likeliest the grammar allows: no gap
    tally.add(row, 39, allowed)  # the likeliest overall, but refused
    assert tally.gaps[0] == 0.0 and tally.gaps[1] >= 30
