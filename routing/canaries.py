"""Canaries: synthetic greedy requests that top up the audits of workers with little greedy traffic.

A greedy answer is the sharpest check there is: one token far below the
reference's choice flags it, and a few flags convict. A worker whose clients
mostly sample (temperature > 0) is checked by the slower Z statistic only.
So a gateway may spend a small share of its traffic (``canary_share``, at
most 0.5% of the requests it routes by default) on greedy requests of its
own, each sent to one chosen worker and always audited. They come from a
synthetic pool, never from a client's prompt (nothing a client asked goes to
another worker), and look like any client's request: the worker cannot tell
them apart, and is served, counted and paid for them as for any other.

This module is the pure part: the pool, and when and to whom to send one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ASKS = (
    "Explain {} in one sentence.",
    "What is {}?",
    "Give two facts about {}.",
    "Describe {} to a child.",
    "Why does {} matter?",
    "Write a short note about {}.",
    "List three words related to {}.",
    "Summarise what you know about {}.",
)
TOPICS = (
    "the moon", "rain", "bread", "volcanoes", "bees", "the ocean", "trains", "music", "gravity", "winter",
    "libraries", "coffee", "bridges", "the alphabet", "clouds", "maps", "gardens", "clocks", "mountains", "salt",
    "electricity", "honey", "rivers", "the sun", "paper", "chess", "forests", "bicycles", "glass", "snow",
)  # fmt: skip
MAX_TOKENS = (24, 32, 48)


def canary_body(rng: random.Random, model: str) -> dict[str, Any]:
    """One synthetic greedy chat request, as a client would send it."""
    ask = rng.choice(ASKS).format(rng.choice(TOPICS))
    return {
        "model": model,
        "messages": [{"role": "user", "content": ask}],
        "max_tokens": rng.choice(MAX_TOKENS),
        "temperature": 0,
    }


@dataclass(slots=True)
class CanaryPlan:
    """How many canaries are due (a share of the requests routed) and which worker needs one most."""

    share: float  # of the requests routed, at most
    wanted_greedy: int = 10  # greedy checks among a worker's last audits below which it gets canaries
    served: int = 0
    sent: int = 0

    def routed(self) -> None:
        self.served += 1

    def due(self) -> bool:
        return self.sent + 1 <= self.share * self.served

    def pick(self, coverage: Iterable[tuple[str, int]]) -> str | None:
        """From (worker id, greedy checks among its last audits): the one with the fewest, if below the want."""
        short = [(greedy, worker) for worker, greedy in coverage if greedy < self.wanted_greedy]
        return min(short)[1] if short else None
