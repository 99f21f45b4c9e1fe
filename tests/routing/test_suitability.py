import pytest

from routing.errors import ContextLengthExceeded, InvalidRequest, NoSuitableWorker
from routing.fleet import Fleet, ModelOffer, Worker
from routing.openai_requests import parse_chat_request
from routing.quantization import Quantization
from routing.suitability import Requirements, forwarded_body, requirements_of, suitable

Q4 = Quantization("Q4_K_M", 4, "int4")
Q8 = Quantization("Q8_0", 8, "int8")


def fleet_with(*offers: tuple[str, Quantization, int]) -> Fleet:
    fleet = Fleet()
    for i, (model, q, ctx) in enumerate(offers):
        fleet.upsert(Worker(f"w{i}", f"http://w{i}"), (ModelOffer(model, q, ctx, "llama.cpp"),))
    return fleet


def test_requirements_from_suffix_list_context_and_region() -> None:
    body = {
        "model": "m:Q8_0",
        "messages": [{"role": "user", "content": "x" * 400}],
        "max_tokens": 50,
        "quantizations": ["int8", "fp16"],
    }
    req = requirements_of(body, parse_chat_request(body), region_header="eu")
    assert req == Requirements("m", suffix="Q8_0", quantizations=("int8", "fp16"), min_context=150, region="eu")
    assert requirements_of({**body, "region": "us"}, parse_chat_request(body), "eu").region == "us"


def test_quantizations_must_be_strings() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "quantizations": "int4"}
    with pytest.raises(InvalidRequest) as caught:
        requirements_of(body, parse_chat_request(body))
    assert caught.value.param == "quantizations"


def test_filter_by_class_label_and_suffix() -> None:
    fleet = fleet_with(("m", Q4, 4096), ("m", Q8, 4096))
    pick = lambda req: {c.offer.quantization.label for c in suitable(fleet.candidates("m"), req)}  # noqa: E731
    assert pick(Requirements("m")) == {"Q4_K_M", "Q8_0"}
    assert pick(Requirements("m", quantizations=("int8",))) == {"Q8_0"}
    assert pick(Requirements("m", suffix="q4_k_m")) == {"Q4_K_M"}
    assert pick(Requirements("m", suffix="int4", quantizations=("Q4_K_M", "Q8_0"))) == {"Q4_K_M"}


def test_no_quantization_fits_names_what_is_available() -> None:
    fleet = fleet_with(("m", Q4, 4096))
    with pytest.raises(NoSuitableWorker) as caught:
        suitable(fleet.candidates("m"), Requirements("m", quantizations=("fp16",)))
    assert caught.value.status == 503 and caught.value.code == "no_suitable_quantization"
    assert "fp16" in caught.value.message and "Q4_K_M" in caught.value.message


def test_context_filter_keeps_big_enough_and_refuses_impossible() -> None:
    fleet = fleet_with(("m", Q4, 2048), ("m", Q8, 8192))
    fits = suitable(fleet.candidates("m"), Requirements("m", min_context=4000))
    assert [c.offer.context_length for c in fits] == [8192]
    with pytest.raises(ContextLengthExceeded) as caught:
        suitable(fleet.candidates("m"), Requirements("m", min_context=10000))
    assert caught.value.status == 400 and "8192" in caught.value.message


def test_forwarded_body_strips_routing_fields_and_pins_the_offer() -> None:
    fleet = Fleet()
    fleet.upsert(Worker("a", "http://a"), (ModelOffer("m", Q4, 4096, "llama.cpp"), ModelOffer("m", Q8, 4096, "x")))
    fleet.upsert(Worker("b", "http://b"), (ModelOffer("m", Q4, 4096, "llama.cpp"),))
    raw = b'{"model": "m", "messages": []}'
    body = {"model": "m", "messages": []}
    only_b = next(c for c in fleet.candidates("m") if c.state.worker.id == "b")
    assert forwarded_body(raw, body, Requirements("m"), only_b) is raw  # nothing to change: bytes untouched
    a_q8 = next(c for c in fleet.candidates("m") if c.offer.quantization is Q8)
    out = forwarded_body(raw, {**body, "quantizations": ["int8"]}, Requirements("m"), a_q8)
    assert out == b'{"model": "m:Q8_0", "messages": []}'
    assert forwarded_body(raw, {**body, "region": "eu"}, Requirements("m"), only_b) == b'{"model": "m", "messages": []}'
    # A budgeted key's cap becomes max_tokens only where the context would allow more.
    capped = forwarded_body(raw, body, Requirements("m"), only_b, completion_cap=150)
    assert capped == b'{"model": "m", "messages": [], "max_tokens": 150}'
    assert forwarded_body(raw, body, Requirements("m"), only_b, completion_cap=5000) is raw
