"""Small fleets for routing tests."""

from __future__ import annotations

from routing.fleet import Fleet, ModelOffer, Worker, WorkerState
from routing.health import Status
from routing.quantization import Quantization

Q4 = Quantization("Q4_K_M", 4, "int4")


def offer(model: str = "m", q: Quantization = Q4, context: int = 4096) -> ModelOffer:
    return ModelOffer(model, q, context, "llama.cpp")


def measured(state: WorkerState, *, rtt_s: float, service_s: float, model: str = "m", now: float = 0.0) -> WorkerState:
    """A worker whose RTT and service time have been seen, and that is off probation."""
    state.rtt_s.observe(rtt_s, now)
    state.service_estimate(model).observe(service_s, now)
    state.health.status = Status.HEALTHY
    return state


def fleet_of(*names: str, model: str = "m") -> tuple[Fleet, dict[str, WorkerState]]:
    fleet = Fleet()
    states = {n: fleet.upsert(Worker(n, f"http://{n}"), (offer(model),)) for n in names}
    return fleet, states
