"""Choice: which workers one request may try, in order (the attempt plan).

This first balancer prefers the worker with the fewest requests in flight
from this gateway, breaking ties at random (the rng is injected, so tests are
deterministic). Only healthy workers are planned.
"""

from __future__ import annotations

import random

from routing.errors import ModelNotFound, NoSuitableWorker
from routing.fleet import Candidate, Fleet


def attempt_plan(fleet: Fleet, model: str, *, rng: random.Random, max_attempts: int) -> list[Candidate]:
    candidates = fleet.candidates(model)
    if not candidates:
        raise ModelNotFound(f"The model '{model}' does not exist or no worker serves it.", param="model")
    healthy = [c for c in candidates if c.state.healthy]
    if not healthy:
        raise NoSuitableWorker(
            f"No healthy worker serves '{model}' right now ({len(candidates)} known, all unhealthy)."
        )
    rng.shuffle(healthy)
    healthy.sort(key=lambda c: c.state.in_flight)
    return healthy[:max_attempts]
