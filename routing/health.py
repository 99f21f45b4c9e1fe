"""Health: which workers may get traffic, from probes and from real outcomes.

Two sources, kept apart. Active probes (``/health`` and its round trip) say
whether a worker is *reachable*: a fact, so an unreachable worker never gets
traffic. Outcomes of real requests drive *outlier ejection* (as Envoy's):
consecutive failures eject a worker for a backoff that doubles with each
ejection in a row, capped; at most ``max_ejected_share`` of the fleet is
ejected at once. An ejected worker returns only after its ejection time has
passed *and* a probe has reached it, and then on probation (one request at a
time) until a request succeeds. New workers start on probation too. Panic
mode (in the balancer) ignores ejections when too few workers are left.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class Failure(enum.Enum):
    CONNECT = "connect"  # refused or unreachable: down now, until a probe says otherwise
    ERROR = "error"  # a 5xx, or the connection broke
    TIMEOUT = "timeout"  # no first byte in time


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    failures_to_eject: int = 3
    base_ejection_s: float = 5.0
    max_ejection_s: float = 300.0
    max_ejected_share: float = 0.5
    # Below this share of reachable workers left un-ejected, ejections are ignored (panic).
    panic_below_share: float = 0.5


@dataclass(slots=True)
class Health:
    reachable: bool = True
    probation: bool = True
    ejected: bool = False
    ejected_until: float = 0.0
    ejections_in_a_row: int = 0
    last_ejected_at: float = float("-inf")
    consecutive_failures: int = 0
    busy_until: float = 0.0  # it said 503 + Retry-After: tried last until then
    total_ejections: int = 0


@dataclass(slots=True)
class Outliers:
    """Applies ``HealthPolicy`` to workers' ``Health`` records; counts the ejected."""

    policy: HealthPolicy = field(default_factory=HealthPolicy)
    _ejected: set[str] = field(default_factory=set)

    def succeeded(self, worker_id: str, health: Health, now: float) -> None:
        health.consecutive_failures = 0
        health.probation = False
        if now - health.last_ejected_at > self.policy.max_ejection_s:
            health.ejections_in_a_row = 0

    def failed(self, worker_id: str, health: Health, kind: Failure, now: float, fleet_size: int) -> None:
        if kind is Failure.CONNECT:
            health.reachable = False
        health.consecutive_failures += 1
        if health.ejected:
            return
        if health.probation or health.consecutive_failures >= self.policy.failures_to_eject:
            self._eject(worker_id, health, now, fleet_size)

    def probed(self, worker_id: str, health: Health, *, reached: bool, now: float) -> None:
        health.reachable = reached
        if reached and health.ejected and now >= health.ejected_until:
            health.ejected = False
            health.probation = True
            self._ejected.discard(worker_id)
            log.info("worker %s is back from ejection, on probation", worker_id)

    def forget(self, worker_id: str) -> None:
        self._ejected.discard(worker_id)

    @property
    def ejected_count(self) -> int:
        return len(self._ejected)

    def _eject(self, worker_id: str, health: Health, now: float, fleet_size: int) -> None:
        p = self.policy
        if len(self._ejected) + 1 > p.max_ejected_share * fleet_size:
            log.warning("worker %s keeps failing, but ejecting it would exceed the cap", worker_id)
            return
        health.ejected = True
        health.ejections_in_a_row += 1
        health.total_ejections += 1
        health.last_ejected_at = now
        backoff = min(p.max_ejection_s, p.base_ejection_s * 2 ** (health.ejections_in_a_row - 1))
        health.ejected_until = now + backoff
        health.consecutive_failures = 0
        self._ejected.add(worker_id)
        log.warning("worker %s ejected for %.0f s after repeated failures", worker_id, backoff)
