from routing.fleet import Fleet, ModelOffer, Worker
from routing.quantization import Quantization

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
