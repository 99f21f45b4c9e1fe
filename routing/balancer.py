"""Choice: which workers one request may try, in order (the attempt plan).

Only suitable (see ``routing.suitability``), healthy workers are planned.
This balancer prefers the requested region, then the worker with the fewest
requests in flight from this gateway, breaking ties at random (the rng is
injected, so tests are deterministic).
"""

from __future__ import annotations

import random

from routing.errors import ModelNotFound, NoSuitableWorker
from routing.fleet import Candidate, Fleet
from routing.suitability import Requirements, suitable


def attempt_plan(fleet: Fleet, req: Requirements, *, rng: random.Random, max_attempts: int) -> list[Candidate]:
    candidates = fleet.candidates(req.model)
    if not candidates:
        raise ModelNotFound(f"The model '{req.model}' does not exist or no worker serves it.", param="model")
    fitting = suitable(candidates, req)
    healthy = [c for c in fitting if c.state.healthy]
    if not healthy:
        raise NoSuitableWorker(
            f"No healthy worker serves '{req.model}' right now ({len(fitting)} suitable, all unhealthy)."
        )
    rng.shuffle(healthy)
    healthy.sort(key=lambda c: (bool(req.region) and c.state.worker.region != req.region, c.state.in_flight))
    return healthy[:max_attempts]
