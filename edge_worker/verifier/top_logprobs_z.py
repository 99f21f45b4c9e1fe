"""A sampled answer's Z from the few top log-probabilities a vLLM reference gives, not the whole distribution.

vLLM's prompt logprobs list, per position, the ``K`` likeliest tokens (its
``max_logprobs``, 20 by default) and the token that is there. That is enough
for an exact test, by scoring the draw on a coarser distribution that those
numbers fix completely:

- at temperature 1, the categories are the ``K`` likeliest tokens and "any
  other" (the tail, ``1 - Σ p_top``): an honest draw lands in each with exactly
  its probability, so ``log q(category) + H`` has mean 0 and a known variance;
- at any other temperature the tail's tempered mass is unknown (it needs every
  token's probability), but, *given* that the draw is among the ``K`` likeliest,
  it is distributed as their tempered probabilities renormalised: a position
  whose token is outside them is skipped, which conditions on nothing the
  worker controls beyond its own draw.

Either way ``Z = Σ(log q(x_t) + H_t) / √Σ Var_t`` is about N(0, 1) for an honest
worker and shifted below 0 for one whose draws follow other weights, as
``edge_worker.verifier.scoring.Tally`` computes over the whole vocabulary.
Pure arithmetic over at most ``K + 1`` numbers a position, tested by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Of the draws the coarse test keeps, a category's mass is at least this (a tail rounded to 0 would put
# log 0 in the sum when the draw lands there; the draw itself proves the tail is not empty).
_FLOOR = 1e-12


@dataclass(frozen=True, slots=True)
class Listed:
    """One position as the reference lists it: the likeliest tokens' log-probabilities, and the drawn token's."""

    top: Sequence[float]  # the K likeliest tokens' log-probabilities, in any order
    chosen: float  # the drawn token's log-probability
    chosen_in_top: bool  # whether the drawn token is one of those K (then ``chosen`` is among ``top``)


@dataclass(slots=True)
class TopLogprobsZ:
    """The running Z over one answer's positions, fed in order."""

    temperature: float
    _surprise: float = 0.0  # Σ (log q(x) + H)
    _variance: float = 0.0  # Σ Var(log q)
    positions: int = 0  # positions that counted (a tempered draw outside the top is skipped)

    def add(self, listed: Listed) -> None:
        if not listed.top:
            return
        if self.temperature == 1.0:
            masses, drawn = _with_tail(listed)
        elif listed.chosen_in_top:
            masses, drawn = _tempered(listed, self.temperature)
        else:
            return
        entropy = -sum(m * math.log(m) for m in masses)
        second = sum(m * math.log(m) ** 2 for m in masses)
        self._surprise += math.log(drawn) + entropy
        self._variance += max(0.0, second - entropy * entropy)
        self.positions += 1

    @property
    def z(self) -> float:
        return self._surprise / math.sqrt(self._variance) if self._variance > 0 else 0.0


def _with_tail(listed: Listed) -> tuple[list[float], float]:
    """The K likeliest and the tail, normalised; and the mass of the category drawn."""
    top = [math.exp(lp) for lp in listed.top]
    tail = 1.0 - sum(top)
    if not listed.chosen_in_top:
        tail = max(tail, math.exp(listed.chosen))  # the tail holds at least the token drawn from it
    masses = [*top, tail] if tail > _FLOOR or not listed.chosen_in_top else top
    total = sum(masses)
    masses = [max(m / total, _FLOOR) for m in masses]
    drawn = math.exp(listed.chosen) / total if listed.chosen_in_top else masses[-1]
    return masses, max(drawn, _FLOOR)


def _tempered(listed: Listed, temperature: float) -> tuple[list[float], float]:
    """The K likeliest at ``temperature``, renormalised among themselves; and the drawn token's mass."""
    best = max(listed.top)
    weights = [math.exp((lp - best) / temperature) for lp in listed.top]
    total = sum(weights)
    masses = [max(w / total, _FLOOR) for w in weights]
    drawn = math.exp((listed.chosen - best) / temperature) / total
    return masses, max(drawn, _FLOOR)
