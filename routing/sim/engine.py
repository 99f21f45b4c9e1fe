"""The event loop: Poisson arrivals, a network with RTTs, FIFO workers, probes.

Each request follows the gateway's rules: plan, try the first worker, fail
over on a refused connection, a broken one or a first-byte timeout, within
``max_attempts`` and an overall deadline. A timed-out attempt is cancelled on
its worker (as the real gateway's disconnect cancels a generation).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from routing.balancer import Balancer
from routing.discovery import Upsert
from routing.errors import InferCDNError
from routing.fleet import Candidate, Fleet, Load, ModelOffer, Worker, WorkerState
from routing.health import Failure
from routing.policies import Dispatch, Policy
from routing.quantization import Quantization
from routing.sim.scenario import Scenario, SimWorker
from routing.slo_floors import SloFloors
from routing.suitability import Requirements

MODEL = "sim-model"
_OFFER = ModelOffer(MODEL, Quantization("Q4_K_M", 4, "int4"), 8192, "sim")
_REQUIREMENTS = Requirements(MODEL)


@dataclass(slots=True)
class SimResult:
    policy: str
    latencies_s: list[float] = field(default_factory=list)
    failed: int = 0
    attempts: int = 0
    served_by: Counter[str] = field(default_factory=Counter)
    tried_on: Counter[str] = field(default_factory=Counter)  # attempts per worker, failed ones too
    failures: Counter[Failure] = field(default_factory=Counter)  # failed attempts by kind (ERROR: cut mid-generation)

    @property
    def requests(self) -> int:
        return len(self.latencies_s) + self.failed

    @property
    def success_rate(self) -> float:
        return len(self.latencies_s) / self.requests if self.requests else 0.0

    def percentile(self, q: float) -> float:
        if len(self.latencies_s) < 2:
            return math.nan
        return statistics.quantiles(self.latencies_s, n=1000, method="inclusive")[round(q * 1000) - 1]


@dataclass(slots=True)
class _Attempt:
    dispatch: Dispatch
    request: _Request
    settled: bool = False
    job_end: float = 0.0


@dataclass(slots=True)
class _Request:
    arrived: float
    gateway: Balancer
    plan: list[Candidate]
    next_index: int = 0


@dataclass(slots=True)
class _SimNode:
    spec: SimWorker
    states: list[WorkerState]  # as each gateway sees it
    running: list[_Attempt] = field(default_factory=list)
    queue: deque[_Attempt] = field(default_factory=deque)


class Simulation:
    """One world of workers, and ``scenario.gateways`` gateways that each know only what they see."""

    def __init__(
        self,
        scenario: Scenario,
        make_policy: Callable[[], Policy],
        *,
        slo_routing: bool = True,
        floors: SloFloors | None = None,
    ):
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)  # the world: arrivals, service times, jitter
        self.gateways = [
            Balancer(
                Fleet(),
                random.Random(scenario.seed + 1 + i),
                make_policy(),
                max_attempts=scenario.max_attempts,
                slo_routing=slo_routing,
                floors=floors or SloFloors(),
            )
            for i in range(scenario.gateways)
        ]
        self.balancer = self.gateways[0]
        self.result = SimResult(self.balancer.policy.name)
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.nodes: dict[str, _SimNode] = {}
        for spec in scenario.workers:
            worker = Worker(spec.id, f"sim://{spec.id}", spec.region, spec.capacity)
            self.nodes[spec.id] = _SimNode(spec, [_join(g, worker) for g in self.gateways])

    def run(self) -> SimResult:
        sc = self.scenario
        for node in self.nodes.values():
            for gateway, state in zip(self.gateways, node.states, strict=True):
                self._at(self.rng.uniform(0, sc.probe_interval_s), partial(self._probe, node, gateway, state))
            for crash in node.spec.crashes(sc.duration_s + sc.deadline_s):
                self._at(crash, partial(self._crash, node))
        self._at(self.rng.expovariate(sc.arrival_rps), self._arrive)
        while self._events:
            self.now, _, action = heapq.heappop(self._events)
            action()
        return self.result

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), action))

    # -- clients and the gateway --------------------------------------------

    def _arrive(self) -> None:
        sc = self.scenario
        next_arrival = self.now + self.rng.expovariate(sc.arrival_rps)
        if next_arrival < sc.duration_s:
            self._at(next_arrival, self._arrive)
        gateway = self.gateways[int(self.rng.random() * len(self.gateways))]
        try:
            plan = gateway.plan(_REQUIREMENTS, self.now)
        except InferCDNError:
            self.result.failed += 1
            return
        self._try_next(_Request(self.now, gateway, plan))

    def _try_next(self, request: _Request) -> None:
        sc = self.scenario
        remaining = request.arrived + sc.deadline_s - self.now
        if request.next_index >= len(request.plan) or remaining <= 0:
            self.result.failed += 1
            return
        candidate = request.plan[request.next_index]
        request.next_index += 1
        self.result.attempts += 1
        self.result.tried_on[candidate.state.worker.id] += 1
        node = self.nodes[candidate.state.worker.id]
        attempt = _Attempt(request.gateway.dispatch(candidate, self.now), request)
        if node.spec.dead(self.now):
            self._at(self.now + node.spec.rtt_s, lambda: self._fail(attempt, Failure.CONNECT))
            return
        self._at(self.now + node.spec.rtt_s / 2, lambda: self._reach(node, attempt))
        self._at(self.now + min(sc.first_byte_timeout_s, remaining), lambda: self._time_out(node, attempt))

    def _answered(self, attempt: _Attempt) -> None:
        if attempt.settled:
            return
        attempt.settled = True
        gateway = attempt.request.gateway
        gateway.first_byte(attempt.dispatch, self.now)
        gateway.finished(attempt.dispatch)
        self.result.latencies_s.append(self.now - attempt.request.arrived)
        self.result.served_by[attempt.dispatch.candidate.state.worker.id] += 1

    def _fail(self, attempt: _Attempt, kind: Failure) -> None:
        if attempt.settled:
            return
        attempt.settled = True
        self.result.failures[kind] += 1
        gateway = attempt.request.gateway
        gateway.failed(attempt.dispatch, kind, self.now)
        gateway.finished(attempt.dispatch)
        self._try_next(attempt.request)

    def _time_out(self, node: _SimNode, attempt: _Attempt) -> None:
        if attempt.settled:
            return
        self._fail(attempt, Failure.TIMEOUT)
        self._cancel(node, attempt)

    # -- workers --------------------------------------------------------------

    def _reach(self, node: _SimNode, attempt: _Attempt) -> None:
        if attempt.settled:
            return
        if node.spec.dead(self.now):
            self._fail(attempt, Failure.CONNECT)
            return
        node.queue.append(attempt)
        self._start_jobs(node)

    def _start_jobs(self, node: _SimNode) -> None:
        spec = node.spec
        while node.queue and len(node.running) < spec.capacity:
            attempt = node.queue.popleft()
            mean = spec.service_s * spec.service_factor(self.now)
            sigma = self.scenario.service_sigma
            service = self.rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)
            if spec.stall_share and self.rng.random() < spec.stall_share:
                service *= spec.stall_factor
            attempt.job_end = self.now + service
            node.running.append(attempt)
            crash = spec.next_crash(self.now)
            if crash is not None and attempt.job_end >= crash:
                # The process goes down mid-generation: the gateway sees the connection break.
                self._at(crash + spec.rtt_s / 2, partial(self._fail, attempt, Failure.ERROR))
            else:
                self._at(attempt.job_end, partial(self._finish_job, node, attempt))

    def _finish_job(self, node: _SimNode, attempt: _Attempt) -> None:
        if attempt in node.running:
            node.running.remove(attempt)
            self._at(self.now + node.spec.rtt_s / 2, lambda: self._answered(attempt))
        self._start_jobs(node)

    def _crash(self, node: _SimNode) -> None:
        """Queued requests break with the process (running ones were scheduled to break already);
        it comes back, if it does, with nothing running."""
        for attempt in node.queue:
            self._at(self.now + node.spec.rtt_s / 2, partial(self._fail, attempt, Failure.ERROR))
        node.queue.clear()
        node.running.clear()

    def _cancel(self, node: _SimNode, attempt: _Attempt) -> None:
        if attempt in node.queue:
            node.queue.remove(attempt)
        elif attempt in node.running:
            node.running.remove(attempt)
            self._start_jobs(node)

    def _probe(self, node: _SimNode, gateway: Balancer, state: WorkerState) -> None:
        sc = self.scenario
        if self.now < sc.duration_s + sc.deadline_s:
            next_probe = self.now + sc.probe_interval_s * self.rng.uniform(0.8, 1.2)
            self._at(next_probe, partial(self._probe, node, gateway, state))
        spec = node.spec
        if spec.dead(self.now):
            self._at(self.now + spec.rtt_s, lambda: gateway.probed(state, rtt_s=None, now=self.now))
            return
        rtt = spec.rtt_s * self.rng.uniform(1.0, 1.2)
        load = Load(in_flight=len(node.running), queued=len(node.queue), reported_at=self.now)
        self._at(self.now + rtt, lambda: gateway.probed(state, rtt_s=rtt, now=self.now, load=load))


def simulate(
    scenario: Scenario, make_policy: Callable[[], Policy], *, slo_routing: bool = True, floors: SloFloors | None = None
) -> SimResult:
    return Simulation(scenario, make_policy, slo_routing=slo_routing, floors=floors).run()


def _join(gateway: Balancer, worker: Worker) -> WorkerState:
    gateway.apply(Upsert(worker, (_OFFER,)))
    state = gateway.fleet.get(worker.id)
    assert state is not None
    return state
