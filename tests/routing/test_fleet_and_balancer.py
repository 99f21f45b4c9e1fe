import random

import pytest

from routing.balancer import attempt_plan
from routing.errors import ModelNotFound, NoSuitableWorker
from routing.fleet import Fleet, ModelOffer, Worker
from routing.quantization import Quantization
from routing.suitability import Requirements

Q4 = Quantization("Q4_K_M", 4, "int4")
Q8 = Quantization("Q8_0", 8, "int8")


def offer(model: str, q: Quantization = Q4, aliases: tuple[str, ...] = ()) -> ModelOffer:
    return ModelOffer(model, q, 4096, "llama.cpp", aliases=aliases)


def test_index_by_model_and_alias_follows_updates() -> None:
    fleet = Fleet()
    fleet.upsert(Worker("a", "http://a"), (offer("m1", aliases=("M-One",)),))
    fleet.upsert(Worker("b", "http://b"), (offer("m1", Q8), offer("m2")))
    assert {c.state.worker.id for c in fleet.candidates("m1")} == {"a", "b"}
    assert [c.state.worker.id for c in fleet.candidates("m-one")] == ["a"]
    fleet.upsert(Worker("b", "http://b"), (offer("m2"),))  # b drops m1
    assert [c.state.worker.id for c in fleet.candidates("m1")] == ["a"]
    fleet.remove("a")
    assert fleet.candidates("m1") == () and fleet.candidates("m-one") == ()
    assert set(fleet.models()) == {"m2"}


def test_upsert_keeps_live_counters() -> None:
    fleet = Fleet()
    state = fleet.upsert(Worker("a", "http://a"), (offer("m"),))
    state.in_flight = 3
    assert fleet.upsert(Worker("a", "http://a"), (offer("m", Q8),)).in_flight == 3


def test_plan_prefers_fewest_in_flight_and_skips_unhealthy() -> None:
    fleet = Fleet()
    for name, busy in (("a", 2), ("b", 0), ("c", 1)):
        fleet.upsert(Worker(name, f"http://{name}"), (offer("m"),)).in_flight = busy
    fleet.upsert(Worker("sick", "http://sick"), (offer("m"),)).healthy = False
    plan = attempt_plan(fleet, Requirements("m"), rng=random.Random(1), max_attempts=5)
    assert [c.state.worker.id for c in plan] == ["b", "c", "a"]
    assert len(attempt_plan(fleet, Requirements("m"), rng=random.Random(1), max_attempts=2)) == 2


def test_plan_errors_say_what_is_missing() -> None:
    fleet = Fleet()
    with pytest.raises(ModelNotFound):
        attempt_plan(fleet, Requirements("m"), rng=random.Random(), max_attempts=3)
    fleet.upsert(Worker("a", "http://a"), (offer("m"),)).healthy = False
    with pytest.raises(NoSuitableWorker, match="unhealthy"):
        attempt_plan(fleet, Requirements("m"), rng=random.Random(), max_attempts=3)


def test_plan_prefers_the_requested_region() -> None:
    fleet = Fleet()
    fleet.upsert(Worker("near", "http://near", region="eu"), (offer("m"),)).in_flight = 5
    fleet.upsert(Worker("far", "http://far", region="us"), (offer("m"),))
    plan = attempt_plan(fleet, Requirements("m", region="eu"), rng=random.Random(3), max_attempts=2)
    assert [c.state.worker.id for c in plan] == ["near", "far"]
    plan = attempt_plan(fleet, Requirements("m"), rng=random.Random(3), max_attempts=2)
    assert [c.state.worker.id for c in plan] == ["far", "near"]
