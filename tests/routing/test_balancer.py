import random

import pytest

from routing.balancer import Balancer
from routing.discovery import Remove, Upsert
from routing.errors import ModelNotFound, NoSuitableWorker
from routing.fleet import LOAD_TTL_S, Fleet, Load, Worker
from routing.health import Failure, Status
from routing.reputation import Check, Reputations
from routing.slo_floors import parse_slo_floors
from routing.suitability import Requirements
from tests.routing.fleets import fleet_of, measured, offer

M = Requirements("m")


def ids(plan: list) -> list[str]:  # type: ignore[type-arg]
    return [c.state.worker.id for c in plan]


def test_errors_say_what_is_missing() -> None:
    fleet, states = fleet_of("a")
    balancer = Balancer(fleet, random.Random(1))
    with pytest.raises(ModelNotFound):
        balancer.plan(Requirements("other"), now=0.0)
    states["a"].health.status = Status.UNREACHABLE
    with pytest.raises(NoSuitableWorker, match="none reachable"):
        balancer.plan(M, now=0.0)


def test_plan_orders_by_expected_latency_and_skips_the_unreachable() -> None:
    fleet, s = fleet_of("fast", "slow", "far", "gone")
    measured(s["fast"], rtt_s=0.01, service_s=0.2)
    measured(s["slow"], rtt_s=0.01, service_s=1.0)
    measured(s["far"], rtt_s=0.5, service_s=0.2)
    measured(s["gone"], rtt_s=0.01, service_s=0.1).health.status = Status.UNREACHABLE
    plan = Balancer(fleet, random.Random(1), max_attempts=5).plan(M, now=1.0)
    assert ids(plan) == ["fast", "far", "slow"]


def test_in_flight_requests_spread_a_burst_instead_of_herding() -> None:
    fleet, s = fleet_of("fast", "slow")
    measured(s["fast"], rtt_s=0.01, service_s=0.2)
    measured(s["slow"], rtt_s=0.01, service_s=0.5)
    balancer = Balancer(fleet, random.Random(1))
    chosen = []
    for _ in range(7):
        first = balancer.plan(M, now=1.0)[0]
        balancer.dispatch(first, now=1.0)
        chosen.append(first.state.worker.id)
    # Expected delay rises by one service time per request queued: 5 : 2 by speed.
    assert chosen.count("fast") == 5 and chosen.count("slow") == 2


def test_the_workers_own_queue_report_counts_too() -> None:
    fleet, s = fleet_of("a", "b")
    measured(s["a"], rtt_s=0.01, service_s=0.2)
    measured(s["b"], rtt_s=0.01, service_s=0.3)
    balancer = Balancer(fleet, random.Random(1))
    assert ids(balancer.plan(M, now=1.0))[0] == "a"
    balancer.probed(s["a"], rtt_s=0.01, now=1.0, load=Load(in_flight=1, queued=3))  # another gateway's traffic
    assert ids(balancer.plan(M, now=1.0))[0] == "b"


def test_a_worker_turning_slow_loses_traffic_at_once() -> None:
    fleet, s = fleet_of("a", "b")
    measured(s["a"], rtt_s=0.01, service_s=0.2)
    measured(s["b"], rtt_s=0.01, service_s=0.3)
    balancer = Balancer(fleet, random.Random(1))
    first = balancer.plan(M, now=1.0)[0]
    assert first.state.worker.id == "a"
    dispatch = balancer.dispatch(first, now=1.0)
    balancer.first_byte(dispatch, now=5.0)  # took 4 s
    balancer.finished(dispatch)
    assert ids(balancer.plan(M, now=5.0))[0] == "b"


def test_new_workers_are_on_probation_one_request_at_a_time() -> None:
    fleet, s = fleet_of("old", "new")
    measured(s["old"], rtt_s=0.01, service_s=1.0)
    s["new"].rtt_s.observe(0.01, 0.0)  # probed, never served
    balancer = Balancer(fleet, random.Random(1))
    # Untried, it is assumed typical (like its peers) and tried ...
    assert "new" in ids(balancer.plan(M, now=1.0))
    trial = balancer.dispatch(next(c for c in fleet.candidates("m") if c.state.worker.id == "new"), now=1.0)
    # ... but only one request at a time first until it succeeds; others get it only as a fallback.
    assert ids(balancer.plan(M, now=1.0)) == ["old", "new"]
    balancer.first_byte(trial, now=1.1)
    balancer.finished(trial)
    assert s["new"].health.status is Status.HEALTHY
    assert ids(balancer.plan(M, now=1.2))[0] == "new"  # it proved fast


def test_ejected_workers_are_skipped_until_too_few_are_left_then_panic() -> None:
    fleet, s = fleet_of("a", "b", "c", "d")
    for state in s.values():
        measured(state, rtt_s=0.01, service_s=0.2)
    balancer = Balancer(fleet, random.Random(1), max_attempts=4)
    for name in ("a", "b"):
        candidate = next(c for c in fleet.candidates("m") if c.state.worker.id == name)
        for _ in range(3):
            d = balancer.dispatch(candidate, now=1.0)
            balancer.failed(d, Failure.ERROR, now=1.0)
            balancer.finished(d)
    assert sorted(ids(balancer.plan(M, now=2.0))) == ["c", "d"]  # 2 of 4 left: not yet panic
    s["c"].health.status = Status.EJECTED  # 1 of 4 left: below half, so ejections are ignored
    assert sorted(ids(balancer.plan(M, now=2.0))) == ["a", "b", "c", "d"]
    assert balancer.panics == 1


def test_a_busy_worker_is_tried_last_until_its_retry_after() -> None:
    fleet, s = fleet_of("a", "b")
    measured(s["a"], rtt_s=0.01, service_s=0.2)
    measured(s["b"], rtt_s=0.01, service_s=0.5)
    balancer = Balancer(fleet, random.Random(1))
    d = balancer.dispatch(balancer.plan(M, now=1.0)[0], now=1.0)
    balancer.busy(d, 5.0, now=1.0)
    balancer.finished(d)
    assert ids(balancer.plan(M, now=2.0)) == ["b", "a"]
    assert ids(balancer.plan(M, now=7.0)) == ["a", "b"]
    assert s["a"].health.status is Status.HEALTHY  # full is not broken


def test_region_preference_comes_first() -> None:
    fleet = Fleet()
    near = fleet.upsert(Worker("near", "http://near", region="eu"), (offer(),))
    far = fleet.upsert(Worker("far", "http://far", region="us"), (offer(),))
    measured(near, rtt_s=0.05, service_s=0.5)
    measured(far, rtt_s=0.01, service_s=0.2)
    balancer = Balancer(fleet, random.Random(3))
    assert ids(balancer.plan(Requirements("m", region="eu"), now=1.0)) == ["near", "far"]
    assert ids(balancer.plan(M, now=1.0)) == ["far", "near"]


def test_a_pick_scores_a_bounded_pool_in_a_big_fleet() -> None:
    fleet, s = fleet_of(*(f"w{i}" for i in range(200)))
    for name, state in s.items():
        measured(state, rtt_s=0.01, service_s=0.1 if name == "w7" else 0.5)
    balancer = Balancer(fleet, random.Random(5), max_attempts=100)
    assert len(balancer.plan(M, now=1.0)) == 16  # the pool, not the fleet
    # The best worker is not always in the pool, yet is found often (16 of 200 sampled).
    firsts = [balancer.plan(M, now=1.0)[0].state.worker.id for _ in range(500)]
    assert 0.04 < firsts.count("w7") / 500 < 0.15


def test_a_new_worker_busy_with_its_first_request_stays_in_the_plan_as_a_fallback() -> None:
    fleet, _ = fleet_of("bad", "good")
    balancer = Balancer(fleet, random.Random(1), max_attempts=3)
    # Both new; "good" holds a request, "bad" is free: "bad" goes first, but "good" must follow.
    balancer.dispatch(next(c for c in fleet.candidates("m") if c.state.worker.id == "good"), now=1.0)
    assert ids(balancer.plan(M, now=1.0)) == ["bad", "good"]
    assert balancer.panics == 0  # probation is not ejection: no panic


def test_an_attempt_is_finished_however_it_ends() -> None:
    fleet, s = fleet_of("a")
    balancer = Balancer(fleet, random.Random(1))
    candidate = fleet.candidates("m")[0]
    with pytest.raises(RuntimeError), balancer.attempt(candidate, now=1.0):
        assert s["a"].in_flight == 1
        raise RuntimeError("the request handler was cancelled or failed")
    assert s["a"].in_flight == 0


def test_a_probe_keeps_what_the_heartbeat_said_and_old_reports_age_out() -> None:
    fleet, s = fleet_of("a")
    balancer = Balancer(fleet, random.Random(1))
    balancer.report_load(s["a"], Load(in_flight=1, queued=2, tokens_per_second=40.0), now=1.0)  # a heartbeat
    balancer.probed(s["a"], rtt_s=0.01, now=2.0, load=Load(in_flight=0, queued=5))  # a probe: no tokens/s
    assert (s["a"].load.tokens_per_second, s["a"].load.queued) == (40.0, 5)
    assert s["a"].pending(now=2.0) == 5
    assert s["a"].pending(now=2.0 + LOAD_TTL_S + 0.1) == 0  # the worker went quiet: its old report says nothing


def fail_three_times(balancer: Balancer, worker_id: str, model: str = "m", now: float = 1.0) -> None:
    candidate = next(c for c in balancer.fleet.candidates(model) if c.state.worker.id == worker_id)
    for _ in range(3):
        with balancer.attempt(candidate, now) as d:
            balancer.failed(d, Failure.ERROR, now)


def test_the_ejection_cap_is_per_model_and_what_it_holds_back_is_counted() -> None:
    fleet = Fleet()
    balancer = Balancer(fleet, random.Random(1))
    # "big" has four workers, "small" two; s0 serves both.
    serves = {"s0": ("big", "small"), "s1": ("small",), "b1": ("big",), "b2": ("big",), "b3": ("big",)}
    for name, models in serves.items():
        balancer.apply(Upsert(Worker(name, f"http://{name}"), tuple(offer(m) for m in models)))
    for state in fleet.workers():
        state.health.status = Status.HEALTHY
    fail_three_times(balancer, "b1", "big")
    fail_three_times(balancer, "b2", "big")
    assert [fleet.get(w).health.status for w in ("b1", "b2")] == [Status.EJECTED, Status.EJECTED]  # type: ignore[union-attr]
    fail_three_times(balancer, "b3", "big")  # a third of four "big" workers: over half
    assert fleet.get("b3").health.status is Status.HEALTHY  # type: ignore[union-attr]
    fail_three_times(balancer, "s1", "small")  # one of two "small": allowed, though the fleet has 2 of 5 out
    assert fleet.get("s1").health.status is Status.EJECTED  # type: ignore[union-attr]
    fail_three_times(balancer, "s0", "big")  # would leave "small" with nobody
    assert fleet.get("s0").health.status is Status.HEALTHY  # type: ignore[union-attr]
    assert balancer.suppressed_ejections == 2


def test_discovery_changes_are_applied_in_one_place_and_a_moved_worker_starts_over() -> None:
    fleet = Fleet()
    balancer = Balancer(fleet, random.Random(1))
    worker = Worker("a", "http://a:1")
    assert balancer.apply(Upsert(worker, (offer(),)))
    assert not balancer.apply(Upsert(worker, (offer(),)))  # nothing new
    state = fleet.get("a")
    assert state is not None
    with balancer.attempt(fleet.candidates("m")[0], now=1.0) as d:
        balancer.first_byte(d, now=1.2)
    balancer.probed(state, rtt_s=0.5, now=1.3)
    assert state.health.status is Status.HEALTHY and state.rtt_s.measured
    assert balancer.apply(Upsert(Worker("a", "http://a:1", region="eu"), (offer(),)))  # told more, same address
    assert state.health.status is Status.HEALTHY
    assert balancer.apply(Upsert(Worker("a", "http://a:2"), (offer(),)))  # same id, new address
    moved = fleet.get("a")
    assert moved is not None and moved.health.status is Status.PROBATION and not moved.rtt_s.measured
    assert balancer.apply(Remove("a")) and fleet.get("a") is None
    assert not balancer.apply(Remove("a"))


def test_a_worker_missing_its_availability_slo_drops_behind_a_slightly_slower_one() -> None:
    fleet, s = fleet_of("flaky", "steady")
    measured(s["flaky"], rtt_s=0.01, service_s=0.2)
    measured(s["steady"], rtt_s=0.01, service_s=0.3)
    balancer = Balancer(fleet, random.Random(1), max_attempts=2)
    assert ids(balancer.plan(M, now=1.0)) == ["flaky", "steady"]  # faster, and no SLO verdict yet
    for i in range(100):  # an hour of probes: one in ten of flaky's go unanswered
        now = 2.0 + i * 30
        balancer.probed(s["steady"], rtt_s=0.01, now=now)
        balancer.probed(s["flaky"], rtt_s=None if i % 10 == 0 else 0.01, now=now)
    measured(s["flaky"], rtt_s=0.01, service_s=0.2, now=3000.0).health.status = Status.HEALTHY
    assert s["flaky"].slo_weight == pytest.approx(0.1, rel=0.02)
    assert ids(balancer.plan(M, now=3003.0)) == ["steady", "flaky"]  # still a fallback, never dropped


def _an_hour_of_probes(balancer: Balancer, s: dict, answered: dict[str, int]) -> None:  # type: ignore[type-arg]
    """100 probes each over an hour; ``answered[id]`` of every 10 get through."""
    for i in range(100):
        for worker_id, per_ten in answered.items():
            balancer.probed(s[worker_id], rtt_s=0.01 if i % 10 < per_ten else None, now=2.0 + i * 30)
    for state in s.values():
        state.health.status = Status.HEALTHY


def test_a_model_floor_puts_workers_below_it_after_every_worker_meeting_it() -> None:
    fleet, s = fleet_of("fast-flaky", "slow-steady", "mid-steady")
    for name, service_s in (("fast-flaky", 0.1), ("slow-steady", 0.9), ("mid-steady", 0.5)):
        measured(s[name], rtt_s=0.01, service_s=service_s, now=3000.0)
    floors = parse_slo_floors(["m min_availability=0.95"])
    balancer = Balancer(fleet, random.Random(1), max_attempts=3, floors=floors, slo_routing=False)
    _an_hour_of_probes(balancer, s, {"fast-flaky": 9, "slow-steady": 10, "mid-steady": 10})
    assert ids(balancer.plan(M, now=3003.0)) == ["mid-steady", "slow-steady", "fast-flaky"]  # still a last resort
    assert balancer.floors_unmet == 0
    other = Balancer(fleet, random.Random(1), max_attempts=3, floors=parse_slo_floors(["other max_ttft_p99_s=1"]))
    other.weigh_slos(3003.0)
    assert ids(other.plan(M, now=3003.0))[0] == "fast-flaky"  # a floor for another model changes nothing here


def test_when_no_worker_meets_the_floor_the_request_still_goes_to_the_best() -> None:
    fleet, s = fleet_of("a", "b")
    measured(s["a"], rtt_s=0.01, service_s=0.1, now=3000.0)
    measured(s["b"], rtt_s=0.01, service_s=0.5, now=3000.0)
    balancer = Balancer(
        fleet, random.Random(1), floors=parse_slo_floors(["* min_availability=0.99"]), slo_routing=False
    )
    _an_hour_of_probes(balancer, s, {"a": 9, "b": 8})
    assert ids(balancer.plan(M, now=3003.0)) == ["a", "b"]
    assert balancer.floors_unmet == 1


def test_a_ttft_floor_judges_the_last_hours_p99() -> None:
    fleet, s = fleet_of("spiky", "even")
    balancer = Balancer(fleet, random.Random(1), floors=parse_slo_floors(["m max_ttft_p99_s=2.0"]))
    for i in range(100):
        balancer.slos.of("spiky").attempt(True, 0.2 if i % 20 else 8.0, float(i))  # 5% take 8 s
        balancer.slos.of("even").attempt(True, 0.6, float(i))
    measured(s["spiky"], rtt_s=0.01, service_s=0.2, now=100.0)
    measured(s["even"], rtt_s=0.01, service_s=0.6, now=100.0)
    balancer.weigh_slos(100.0)
    assert ids(balancer.plan(M, now=100.0)) == ["even", "spiky"]


def test_when_every_worker_meeting_the_floor_is_full_the_floor_steers_nothing() -> None:
    fleet, s = fleet_of("fast-flaky", "steady")
    measured(s["fast-flaky"], rtt_s=0.01, service_s=0.1, now=3000.0)
    measured(s["steady"], rtt_s=0.01, service_s=0.5, now=3000.0)
    floors = parse_slo_floors(["m min_availability=0.95"])
    balancer = Balancer(fleet, random.Random(1), floors=floors, slo_routing=False)
    _an_hour_of_probes(balancer, s, {"fast-flaky": 9, "steady": 10})
    assert ids(balancer.plan(M, now=3003.0)) == ["steady", "fast-flaky"]
    s["steady"].in_flight = 1  # its one slot is taken: queueing there would only push it past the floor too
    assert ids(balancer.plan(M, now=3003.0)) == ["fast-flaky", "steady"]
    assert balancer.floors_unmet == 1


def test_what_is_kept_about_a_departed_worker_is_forgotten_after_a_while_but_not_a_conviction() -> None:
    """Ids are cheap to make: SLOs and reputations of workers long gone used to be kept for good."""
    fleet, _ = fleet_of("stays", "leaves", "cheat")
    balancer = Balancer(fleet, random.Random(1), reputations=Reputations(enabled=True), forget_after_s=100.0)
    for worker_id in ("stays", "leaves", "cheat"):
        balancer.slos.of(worker_id).probe(True, 0.0)
        balancer.judged(worker_id, Check(flagged=False), 0.0)
    balancer.convicted("cheat", "served a smaller model", 0.0)
    for worker_id in ("leaves", "cheat"):
        balancer.apply(Remove(worker_id))
    balancer.weigh_slos(1.0)
    assert set(balancer.slos.workers) == {"stays", "leaves", "cheat"}  # gone a moment: it may come back
    balancer.weigh_slos(50.0)
    balancer.apply(Upsert(Worker("leaves", "http://leaves"), (offer(),)))  # it came back in time: kept
    balancer.weigh_slos(120.0)
    assert set(balancer.slos.workers) == {"stays", "leaves"}
    assert balancer.reputations.known() == ["stays", "leaves", "cheat"]  # the conviction stays
    balancer.apply(Remove("leaves"))
    balancer.weigh_slos(121.0)
    balancer.weigh_slos(222.0)
    assert set(balancer.slos.workers) == {"stays"} and balancer.reputations.known() == ["stays", "cheat"]
    assert balancer.reputations.convicted("cheat")
