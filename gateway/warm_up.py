"""Right after a gateway starts, a model nobody has announced yet may simply not be back.

Registered workers learn of a restart from their next heartbeat (a 404) and
register again at once; a Consul watch knows the fleet after its first answer.
Until then an unknown model is 503 + ``Retry-After`` ("warming up"), not 404,
so clients retry instead of concluding the model does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class WarmUp:
    until: float = float("-inf")  # loop time by which registered workers have had time to come back
    waiting_for: set[str] = field(default_factory=set)  # discovery sources with no first answer yet

    def warming(self, now: float) -> bool:
        return now < self.until or bool(self.waiting_for)

    def answered(self, source: str) -> None:
        self.waiting_for.discard(source)
