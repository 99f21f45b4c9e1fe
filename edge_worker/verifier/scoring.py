"""How likely the reference finds each token a worker chose: gaps for greedy answers, Z for sampled ones.

Pure numpy over one logits row per token, so it is tested without a model.
The sampling distribution mirrors the worker's sampler chain
(``edge_worker.runtimes.llama_cpp.sampler``): frequency and presence
penalties over the last ``PENALTY_LAST_N`` tokens it chose (as llama.cpp's
penalties sampler subtracts them from the logits), then top-p on the
probabilities, then temperature; under a grammar (a response schema), a
refused draw is drawn again among the tokens the grammar allows.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from edge_worker.runtimes.llama_cpp.sampler import PENALTY_LAST_N
from routing.verification import EVIDENCE_GAPS, IMPOSSIBLE_GAP


@dataclass(slots=True)
class Tally:
    """The running result over one answer's tokens, fed in order."""

    temperature: float
    top_p: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    gaps: list[float] = field(default_factory=list)
    _recent: deque[int] = field(default_factory=lambda: deque(maxlen=PENALTY_LAST_N))  # the tokens chosen so far
    _counts: Counter[int] = field(default_factory=Counter)  # ... and how often each is among them
    _surprise: float = 0.0  # Σ (log q(x) + H)
    _variance: float = 0.0  # Σ Var(log q)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def add(self, logits: np.ndarray, chosen: int, allowed: np.ndarray | None = None) -> None:
        """One token: the logits before it, the token chosen, and (under a grammar) which tokens it allowed."""
        row = logits.astype(np.float64, copy=True)
        if self.frequency_penalty or self.presence_penalty:
            self._penalise(row)
            self._remember(chosen)
        if allowed is not None and not allowed[chosen]:
            self.gaps.append(IMPOSSIBLE_GAP)  # the grammar refused it: no honest sampler chose it
            return
        best = row.max() if allowed is None else row[allowed].max()
        self.gaps.append(min(IMPOSSIBLE_GAP, float(best - row[chosen])))  # log-softmax cancels out
        if not self.greedy:
            self._add_sampled(row, chosen, allowed)

    def _penalise(self, row: np.ndarray) -> None:
        """What llama.cpp's penalties sampler does to the logits, from the tokens chosen in its window."""
        if not self._counts:
            return
        tokens = np.fromiter(self._counts.keys(), dtype=np.int64, count=len(self._counts))
        counts = np.fromiter(self._counts.values(), dtype=np.float64, count=len(self._counts))
        row[tokens] -= counts * self.frequency_penalty + self.presence_penalty

    def _remember(self, chosen: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            leaving = self._recent[0]
            self._counts[leaving] -= 1
            if not self._counts[leaving]:
                del self._counts[leaving]
        self._recent.append(chosen)
        self._counts[chosen] += 1

    def _add_sampled(self, row: np.ndarray, chosen: int, allowed: np.ndarray | None) -> None:
        q = self._distribution(row)
        if allowed is not None:
            # The worker draws as usual and, only if the grammar refuses that token, draws again among what it
            # allows: P(x) = q(x) + P(refused) q_allowed(x) for an allowed x.
            masked = np.where(allowed, row, -np.inf)
            refused = float(q[~allowed].sum())
            q = np.where(allowed, q, 0.0) + refused * self._distribution(masked)
        if q[chosen] <= 0:
            self.gaps[-1] = IMPOSSIBLE_GAP  # the sampler could not have drawn it
            return
        support = q > 0
        p = q[support]
        log_p = np.log(p)
        entropy = float(-(p * log_p).sum())
        self._surprise += math.log(float(q[chosen])) + entropy
        self._variance += max(0.0, float((p * log_p * log_p).sum()) - entropy * entropy)

    def _distribution(self, row: np.ndarray) -> np.ndarray:
        """The sampler's probabilities over the whole vocabulary: top-p on the probabilities, then temperature."""
        kept = _top_p(row, self.top_p)
        scaled = row[kept] / self.temperature
        q = np.zeros(row.shape[0])
        q[kept] = np.exp(scaled - _logsumexp(scaled))
        return q

    @property
    def z(self) -> float | None:
        if self.greedy:
            return None
        return self._surprise / math.sqrt(self._variance) if self._variance > 0 else 0.0

    def largest(self) -> tuple[tuple[int, float], ...]:
        return largest_gaps(self.gaps)


def largest_gaps(gaps: list[float]) -> tuple[tuple[int, float], ...]:
    """(position, gap) of the largest gaps, largest first: an answer's evidence, bounded."""
    order = sorted(range(len(gaps)), key=lambda i: -gaps[i])[:EVIDENCE_GAPS]
    return tuple((i, round(gaps[i], 4)) for i in order)


def _top_p(row: np.ndarray, top_p: float) -> np.ndarray:
    """The token ids the top-p filter keeps, sorted: the fewest likeliest whose mass reaches ``top_p``
    (never one the row rules out)."""
    if top_p >= 1.0:
        return np.flatnonzero(np.isfinite(row))
    order = np.argsort(-row, kind="stable")
    p = np.exp(row[order] - _logsumexp(row))
    keep = int(np.searchsorted(np.cumsum(p), top_p)) + 1
    return np.sort(order[: max(1, keep)])


def _logsumexp(row: np.ndarray) -> float:
    top = float(row.max())
    return top + math.log(float(np.exp(row - top).sum()))
