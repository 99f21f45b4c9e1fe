import random

import pytest

from routing.balancer import Balancer
from routing.policies import POLICIES, LeastInFlight, LowestLatency, RoundRobin, policy_named
from routing.suitability import Requirements
from tests.routing.fleets import fleet_of, measured

M = Requirements("m")


def firsts(balancer: Balancer, n: int, *, hold: bool) -> list[str]:
    out = []
    for _ in range(n):
        first = balancer.plan(M, now=1.0)[0]
        if hold:
            balancer.dispatch(first, now=1.0)
        out.append(first.state.worker.id)
    return out


def test_round_robin_takes_turns() -> None:
    fleet, _ = fleet_of("a", "b", "c")
    assert sorted(firsts(Balancer(fleet, random.Random(1), RoundRobin()), 6, hold=False)) == list("aabbcc")


def test_least_in_flight_ignores_speed() -> None:
    fleet, s = fleet_of("fast", "slow")
    measured(s["fast"], rtt_s=0.01, service_s=0.1)
    measured(s["slow"], rtt_s=0.01, service_s=5.0)
    chosen = firsts(Balancer(fleet, random.Random(1), LeastInFlight()), 6, hold=True)
    assert chosen.count("slow") == 3


def test_lowest_latency_herds_onto_one_worker() -> None:
    fleet, _ = fleet_of("a", "b")
    policy = LowestLatency()
    balancer = Balancer(fleet, random.Random(1), policy)
    for name, latency in (("a", 0.2), ("b", 0.3)):
        d = balancer.dispatch(next(c for c in fleet.candidates("m") if c.state.worker.id == name), now=0.0)
        balancer.first_byte(d, now=latency)
        balancer.finished(d)
    assert firsts(balancer, 5, hold=True) == ["a"] * 5  # load is invisible to it


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_returns_each_candidate_once(name: str) -> None:
    fleet, _ = fleet_of(*"abcdef")
    plan = Balancer(fleet, random.Random(1), policy_named(name), max_attempts=10).plan(M, now=1.0)
    assert sorted(c.state.worker.id for c in plan) == list("abcdef")
