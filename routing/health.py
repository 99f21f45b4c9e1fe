"""Health: which workers may get traffic, from probes and from real outcomes.

Two sources, kept apart. Active probes (``/health`` and its round trip) say
whether a worker is *reachable*: a fact, so an unreachable worker never gets
traffic. Outcomes of real requests drive *outlier ejection* (as Envoy's):
consecutive failures eject a worker for a backoff that doubles with each
ejection in a row, capped; the balancer caps how many of one model's workers
are ejected at once. An ejected worker returns only after its ejection time
has passed *and* a probe has reached it, and then on probation (one request
at a time) until a request succeeds. New workers, and workers back from
being unreachable, start on probation too.

Every transition is a method of ``Health``: its ``status`` is the one thing
the rest of the gateway reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Failure(enum.Enum):
    CONNECT = "connect"  # refused or unreachable: down now, until a probe says otherwise
    ERROR = "error"  # a 5xx, or the connection broke
    TIMEOUT = "timeout"  # no first byte in time


class Status(enum.Enum):
    PROBATION = "probation"  # new or back: one request at a time first, until one succeeds
    HEALTHY = "healthy"
    EJECTED = "ejected"  # failing: no traffic until its time is served (unless the balancer panics)
    UNREACHABLE = "unreachable"  # probes do not get through: never any traffic


class Verdict(enum.Enum):
    """What a failure did to the worker."""

    COUNTED = "counted"
    EJECTED = "ejected"
    SUPPRESSED = "suppressed"  # it earned an ejection, but the cap kept it in


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    failures_to_eject: int = 3
    base_ejection_s: float = 5.0
    max_ejection_s: float = 300.0
    # At most this share of one model's workers is ejected at once.
    max_ejected_share: float = 0.5
    # Below this share of reachable workers left un-ejected, ejections are ignored (panic).
    panic_below_share: float = 0.5


@dataclass(slots=True)
class Health:
    status: Status = Status.PROBATION
    ejected_until: float = 0.0
    ejections_in_a_row: int = 0
    last_ejected_at: float = float("-inf")
    consecutive_failures: int = 0
    busy_until: float = 0.0  # it said 503 + Retry-After: tried last until then
    total_ejections: int = 0

    @property
    def serving(self) -> bool:
        """Gets traffic in the normal course (not ejected, reachable)."""
        return self.status in (Status.HEALTHY, Status.PROBATION)

    @property
    def reachable(self) -> bool:
        return self.status is not Status.UNREACHABLE

    def succeeded(self, now: float, policy: HealthPolicy) -> None:
        self.consecutive_failures = 0
        if self.status is Status.PROBATION:
            self.status = Status.HEALTHY
        if now - self.last_ejected_at > policy.max_ejection_s:
            self.ejections_in_a_row = 0

    def failed(self, kind: Failure, now: float, policy: HealthPolicy, *, may_eject: bool) -> Verdict:
        """One failed request; ``may_eject`` is the balancer's cap speaking."""
        self.consecutive_failures += 1
        if not self.serving:
            return Verdict.COUNTED
        if self.status is Status.PROBATION or self.consecutive_failures >= policy.failures_to_eject:
            if may_eject:
                self._eject(now, policy)
                return Verdict.EJECTED
            if kind is not Failure.CONNECT:
                return Verdict.SUPPRESSED
        if kind is Failure.CONNECT:
            self.status = Status.UNREACHABLE
        return Verdict.COUNTED

    def probed(self, *, reached: bool, now: float) -> bool:
        """An active probe's result; True if the worker came back (from ejection or unreachability)."""
        if not reached:
            self.status = Status.UNREACHABLE
            return False
        if self.status is Status.UNREACHABLE:
            self.status = Status.EJECTED if now < self.ejected_until else Status.PROBATION
            return self.status is Status.PROBATION
        if self.status is Status.EJECTED and now >= self.ejected_until:
            self.status = Status.PROBATION
            return True
        return False

    def _eject(self, now: float, policy: HealthPolicy) -> None:
        self.status = Status.EJECTED
        self.ejections_in_a_row += 1
        self.total_ejections += 1
        self.last_ejected_at = now
        backoff = min(policy.max_ejection_s, policy.base_ejection_s * 2 ** (self.ejections_in_a_row - 1))
        self.ejected_until = now + backoff
        self.consecutive_failures = 0
