"""The simulator drives the production balancer; these check it models what it claims."""

import logging

import pytest

from routing.health import Failure
from routing.policies import ExpectedLatency, RoundRobin
from routing.sim.engine import simulate
from routing.sim.scenario import Scenario, SimWorker, flaky_fleet, heterogeneous_fleet


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


def test_a_flapping_worker_is_down_a_tenth_of_the_time_and_comes_back_empty() -> None:
    worker = SimWorker("flaps", "near", rtt_s=0.01, capacity=1, service_s=0.5, down_every_s=60.0, down_for_s=6.0)
    assert [t for t in range(180) if worker.dead(t)] == [*range(54, 60), *range(114, 120), *range(174, 180)]
    assert worker.crashes(180.0) == [54.0, 114.0, 174.0]
    assert worker.next_crash(55.0) == 114.0 and worker.next_crash(114.0) == 114.0
    result = simulate(Scenario((worker,), load=0.3, duration_s=180, seed=3), ExpectedLatency)
    # Alone, it loses what arrives while it is down, and serves again after each outage (a jammed
    # queue after the first crash would leave a third of the requests served).
    assert 0.8 < result.success_rate < 1.0
    assert result.failures[Failure.ERROR] + result.failures[Failure.CONNECT] > 0


def test_slo_routing_sends_less_to_the_flaky_and_the_stalling_worker() -> None:
    scenario = Scenario(flaky_fleet(12), load=0.7, duration_s=150)
    flaky = next(w.id for w in scenario.workers if w.down_every_s)
    stalling = next(w.id for w in scenario.workers if w.stall_share)
    off = simulate(scenario, ExpectedLatency, slo_routing=False)
    on = simulate(scenario, ExpectedLatency)
    assert on.success_rate == off.success_rate == 1.0
    assert on.tried_on[flaky] * 2 < off.tried_on[flaky]
    assert on.tried_on[stalling] * 2 < off.tried_on[stalling]
    assert on.failures[Failure.ERROR] <= off.failures[Failure.ERROR]
