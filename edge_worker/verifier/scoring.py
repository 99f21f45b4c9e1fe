"""How likely the reference finds each token a worker chose: gaps for greedy answers, Z for sampled ones.

Pure numpy over one logits row per token, so it is tested without a model.
The sampling distribution mirrors the worker's sampler chain
(``edge_worker.runtimes.llama_cpp.sampler``): top-p on the raw
probabilities, then temperature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from routing.verification import EVIDENCE_GAPS, IMPOSSIBLE_GAP


@dataclass(slots=True)
class Tally:
    """The running result over one answer's tokens, fed in order."""

    temperature: float
    top_p: float = 1.0
    gaps: list[float] = field(default_factory=list)
    _surprise: float = 0.0  # Σ (log q(x) + H)
    _variance: float = 0.0  # Σ Var(log q)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def add(self, logits: np.ndarray, chosen: int) -> None:
        row = logits.astype(np.float64, copy=False)
        self.gaps.append(min(IMPOSSIBLE_GAP, float(row.max() - row[chosen])))  # log-softmax cancels out
        if not self.greedy:
            self._add_sampled(row, chosen)

    def _add_sampled(self, row: np.ndarray, chosen: int) -> None:
        kept = _top_p(row, self.top_p)
        if chosen not in kept:
            self.gaps[-1] = IMPOSSIBLE_GAP  # the sampler could not have drawn it
            return
        scaled = row[kept] / self.temperature
        log_q = scaled - _logsumexp(scaled)
        q = np.exp(log_q)
        entropy = float(-(q * log_q).sum())
        self._surprise += float(log_q[np.searchsorted(kept, chosen)]) + entropy
        self._variance += max(0.0, float((q * log_q * log_q).sum()) - entropy * entropy)

    @property
    def z(self) -> float | None:
        if self.greedy:
            return None
        return self._surprise / math.sqrt(self._variance) if self._variance > 0 else 0.0

    def largest(self) -> tuple[tuple[int, float], ...]:
        order = sorted(range(len(self.gaps)), key=lambda i: -self.gaps[i])[:EVIDENCE_GAPS]
        return tuple((i, round(self.gaps[i], 4)) for i in order)


def _top_p(row: np.ndarray, top_p: float) -> np.ndarray:
    """The token ids the top-p filter keeps, sorted: the fewest likeliest whose mass reaches ``top_p``."""
    if top_p >= 1.0:
        return np.arange(row.shape[0])
    order = np.argsort(-row, kind="stable")
    p = np.exp(row[order] - _logsumexp(row))
    keep = int(np.searchsorted(np.cumsum(p), top_p)) + 1
    return np.sort(order[: max(1, keep)])


def _logsumexp(row: np.ndarray) -> float:
    top = float(row.max())
    return top + math.log(float(np.exp(row - top).sum()))
