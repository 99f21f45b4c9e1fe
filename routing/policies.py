"""Choice policies: in what order to try the workers that may serve a request.

``ExpectedLatency`` is ours and the production default; the others are the
baselines the fleet benchmark compares it with (and an operator may pick
one). Each gets the ready candidates and returns them best first; the rng
and the clock are passed in, so every order is reproducible in tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from routing.fleet import DEFAULT_SERVICE_S, Candidate, WorkerState
from routing.latency import Ewma


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One attempt on one worker, as the balancer saw it when it sent it."""

    candidate: Candidate
    started: float
    ahead: int  # requests already pending on that worker


class Policy(Protocol):
    name: ClassVar[str]

    def order(self, candidates: list[Candidate], now: float, rng: random.Random) -> list[Candidate]: ...

    def observe(self, dispatch: Dispatch, latency_s: float, now: float) -> None: ...


def queue_factor(state: WorkerState, ahead: int) -> float:
    """How many service times a request waits and runs, with ``ahead`` requests before it."""
    capacity = state.worker.capacity
    return 1.0 + max(0, ahead + 1 - capacity) / capacity


@dataclass(slots=True)
class ExpectedLatency:
    """Lowest expected latency: RTT + service time times the queue it would join.

    RTT comes from probes, service time from real traffic (peak-EWMA, per
    model), the queue from this gateway's in-flight count and the worker's
    own report. Counting in-flight requests is what stops herding: each pick
    raises that worker's expected latency at once, so a burst spreads over
    the fleet in proportion to speed (as shortest-expected-delay does), where
    pure lowest-latency sends it all to one worker. Beyond ``pool`` ready
    workers, a random sample of ``pool`` is scored (as Prequal's probe pool),
    so a pick costs the same in a fleet of any size.
    """

    pool: int = 16
    stale_s: float = 60.0
    name: ClassVar[str] = "expected-latency"

    def order(self, candidates: list[Candidate], now: float, rng: random.Random) -> list[Candidate]:
        if len(candidates) > self.pool:
            candidates = rng.sample(candidates, self.pool)
        estimates = [c.state.service_estimate(c.offer.model) for c in candidates]
        fresh = [e.value for e in estimates if e.stamp is not None and now - e.stamp < self.stale_s]
        # A worker with no recent sample is assumed typical (the median of its
        # peers), so it gets tried; one request at a time (probation, or the
        # in-flight rule below), so a wrong guess costs one request, not a burst.
        typical = sorted(fresh)[len(fresh) // 2] if fresh else DEFAULT_SERVICE_S
        scored = []
        for c, e in zip(candidates, estimates, strict=True):
            s = c.state
            known = e.stamp is not None and (now - e.stamp < self.stale_s or s.in_flight > 0)
            cost = s.rtt_s.value + (e.value if known else typical) * queue_factor(s, s.pending(now))
            # A worker on probation or under suspicion, or missing its SLOs, gets a share of its traffic.
            cost /= s.trust_weight * s.slo_weight
            scored.append((cost, rng.random(), c))
        scored.sort(key=_first_two)
        return [c for _, _, c in scored]

    def observe(self, dispatch: Dispatch, latency_s: float, now: float) -> None:
        """Learn the service time: the latency less the RTT, shared by the queue it joined."""
        s = dispatch.candidate.state
        service = max(0.0, latency_s - s.rtt_s.value) / queue_factor(s, dispatch.ahead)
        s.service_estimate(dispatch.candidate.offer.model).observe(service, now)


def _first_two(item: tuple[float, float, Candidate]) -> tuple[float, float]:
    return item[0], item[1]


@dataclass(slots=True)
class RoundRobin:
    name: ClassVar[str] = "round-robin"
    _next: int = 0

    def order(self, candidates: list[Candidate], now: float, rng: random.Random) -> list[Candidate]:
        ordered = sorted(candidates, key=_worker_id)
        self._next += 1
        k = self._next % len(ordered)
        return ordered[k:] + ordered[:k]

    def observe(self, dispatch: Dispatch, latency_s: float, now: float) -> None:
        pass


@dataclass(slots=True)
class Uniform:
    name: ClassVar[str] = "random"

    def order(self, candidates: list[Candidate], now: float, rng: random.Random) -> list[Candidate]:
        return rng.sample(candidates, len(candidates))

    def observe(self, dispatch: Dispatch, latency_s: float, now: float) -> None:
        pass


@dataclass(slots=True)
class LeastInFlight:
    name: ClassVar[str] = "least-in-flight"

    def order(self, candidates: list[Candidate], now: float, rng: random.Random) -> list[Candidate]:
        shuffled = rng.sample(candidates, len(candidates))
        return sorted(shuffled, key=_in_flight)

    def observe(self, dispatch: Dispatch, latency_s: float, now: float) -> None:
        pass


@dataclass(slots=True)
class LowestLatency:
    """LiteLLM's ``latency-based-routing``: the lowest average latency seen, load ignored."""

    name: ClassVar[str] = "lowest-latency"
    _latency: dict[str, Ewma] = field(default_factory=dict)

    def order(self, candidates: list[Candidate], now: float, rng: random.Random) -> list[Candidate]:
        shuffled = rng.sample(candidates, len(candidates))
        # Unmeasured workers first, so each is tried once (as LiteLLM does).
        return sorted(shuffled, key=self._average)

    def _average(self, c: Candidate) -> float:
        seen = self._latency.get(c.state.worker.id)
        return 0.0 if seen is None else seen.value

    def observe(self, dispatch: Dispatch, latency_s: float, now: float) -> None:
        worker_id = dispatch.candidate.state.worker.id
        self._latency.setdefault(worker_id, Ewma(latency_s)).observe(latency_s, now)


def _worker_id(c: Candidate) -> str:
    return c.state.worker.id


def _in_flight(c: Candidate) -> int:
    return c.state.in_flight


POLICIES: dict[str, Callable[[], Policy]] = {
    p.name: p for p in (ExpectedLatency, RoundRobin, Uniform, LeastInFlight, LowestLatency)
}


def policy_named(name: str) -> Policy:
    return POLICIES[name]()
