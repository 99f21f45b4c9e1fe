"""Calibrating the greedy audit threshold on a fleet: the largest gaps honest answers actually show.

Every greedy audit's largest gap (nats, per answer) is kept, per model and
worker, the last ``keep`` of them. ``infercdn fleet calibrate`` prints their
spread and a threshold: the largest gap seen on the model, with half again
as margin, rounded up to a tenth of a nat. Run it on a fleet you trust (a
cheat's gaps would raise it). Honest greedy workers reached 0.73 nats on the
issue's machine and 2.14 on an H100 or a 16-core CPU (one answer in 1,000 on
the GPU at 3.9); cruder quantizations' median largest gap is 2.6 to 3.4.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

MARGIN = 1.5
MAX_SERIES = 4096  # (model, worker) pairs kept; the oldest goes first (worker ids are cheap to make)


@dataclass(frozen=True, slots=True)
class GapSpread:
    model: str
    worker_id: str
    checks: int
    p50: float
    p99: float
    largest: float


@dataclass(slots=True)
class GapBook:
    keep: int = 1000
    _gaps: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def add(self, model: str, worker_id: str, gap: float) -> None:
        kept = self._gaps.get((model, worker_id))
        if kept is None:
            if len(self._gaps) >= MAX_SERIES:
                del self._gaps[next(iter(self._gaps))]
            kept = self._gaps[(model, worker_id)] = deque(maxlen=self.keep)
        kept.append(gap)

    def spreads(self) -> list[GapSpread]:
        return [
            GapSpread(model, worker_id, len(g), _quantile(g, 0.5), _quantile(g, 0.99), max(g))
            for (model, worker_id), g in sorted(self._gaps.items())
        ]

    def suggested(self) -> dict[str, float]:
        """Per model: the threshold these gaps suggest."""
        largest: dict[str, float] = {}
        for (model, _), gaps in self._gaps.items():
            largest[model] = max(largest.get(model, 0.0), max(gaps))
        return {model: math.ceil(gap * MARGIN * 10) / 10 or 0.1 for model, gap in sorted(largest.items())}


def _quantile(values: deque[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
