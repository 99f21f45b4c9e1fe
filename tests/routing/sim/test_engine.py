"""The simulator drives the production balancer; these check it models what it claims."""

import logging

import pytest

from routing.policies import ExpectedLatency, RoundRobin
from routing.sim.engine import simulate
from routing.sim.scenario import Scenario, SimWorker, heterogeneous_fleet


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("routing").setLevel(logging.ERROR)


def test_the_heterogeneous_fleet_has_what_the_benchmark_promises() -> None:
    workers = heterogeneous_fleet(60, duration_s=300)
    assert len({w.region for w in workers}) == 3
    rtts = [w.rtt_s for w in workers]
    assert min(rtts) >= 0.005 and max(rtts) <= 0.150
    speeds = [w.service_s / w.capacity for w in workers]  # seconds per request at full use
    assert max(speeds) / min(speeds) >= 10
    assert [w.slow_factor for w in workers if w.slow_from_s] == [20.0]
    assert len([w for w in workers if w.dies_at_s]) == 1


def test_a_lone_worker_serves_at_its_speed() -> None:
    worker = SimWorker("a", "near", rtt_s=0.1, capacity=1, service_s=0.5)
    result = simulate(Scenario((worker,), load=0.1, duration_s=200, service_sigma=0.01), ExpectedLatency)
    assert result.success_rate == 1.0 and result.requests > 20
    assert result.percentile(0.5) == pytest.approx(0.6, abs=0.05)  # RTT + service, rarely a queue


def test_requests_on_a_dying_worker_fail_over_and_none_is_lost() -> None:
    workers = (
        SimWorker("dies", "near", rtt_s=0.01, capacity=2, service_s=0.5, dies_at_s=20.0),
        SimWorker("stays", "near", rtt_s=0.01, capacity=2, service_s=0.5),
    )
    # Over a few seeds, so some runs certainly have requests on it when it dies.
    results = [simulate(Scenario(workers, load=0.4, duration_s=60, seed=seed), ExpectedLatency) for seed in range(5)]
    assert all(r.success_rate == 1.0 for r in results)
    assert sum(r.attempts for r in results) > sum(r.requests for r in results)  # some needed a second attempt
    assert all(r.served_by["stays"] > r.served_by["dies"] for r in results)


def test_several_gateways_each_route_on_what_they_see() -> None:
    scenario = Scenario(heterogeneous_fleet(20, duration_s=60), load=0.8, duration_s=60, gateways=4)
    ours, rr = simulate(scenario, ExpectedLatency), simulate(scenario, RoundRobin)
    assert ours.success_rate == 1.0
    assert ours.percentile(0.99) * 2 < rr.percentile(0.99)


def test_ours_beats_round_robin_on_the_tail_of_a_mixed_fleet() -> None:
    scenario = Scenario(heterogeneous_fleet(20, duration_s=60), load=0.8, duration_s=60)
    ours, rr = simulate(scenario, ExpectedLatency), simulate(scenario, RoundRobin)
    assert ours.success_rate == 1.0
    assert ours.percentile(0.99) * 2 < rr.percentile(0.99)
