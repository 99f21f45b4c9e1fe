"""Capabilities: what offers claim (bounded), what requests need, and routing on them."""

from __future__ import annotations

from typing import Any

import pytest

from routing.capabilities import (
    ASSUMED,
    EMBEDDING_NEEDS,
    Capabilities,
    Needs,
    capabilities_from_json,
    capabilities_to_json,
    parse_capability_list,
)
from routing.errors import InvalidRequest
from routing.fleet import Fleet, ModelOffer, Worker
from routing.openai_requests import parse_chat_request
from routing.quantization import Quantization
from routing.suitability import requirements_of, suitable
from routing.upstreams import parse_upstream
from routing.wire import PLAIN_RUNTIME, offer_from_json, offer_to_json, offers_from_models_list

Q4 = Quantization("Q4_K_M", 4, "int4")
LLAMA = Capabilities(tools=True, structured_output=True, logprobs=True, max_n=4)


def test_missing_names_the_first_thing_an_offer_cannot_do() -> None:
    assert LLAMA.missing(Needs(tools=True, logprobs=True, n=4)) is None
    assert LLAMA.missing(Needs(vision=True)) == "vision"
    assert LLAMA.missing(Needs(n=5)) == "n=5"
    assert Capabilities().missing(Needs(structured_output=True, n=9)) == "structured_output"
    assert ASSUMED.missing(Needs(True, True, True, True, True, 128)) is None


def test_an_embedding_model_embeds_and_generates_nothing() -> None:
    embedder = Capabilities(embeddings=True, generation=False)
    assert embedder.missing(EMBEDDING_NEEDS) is None
    assert embedder.missing(Needs()) == "generation"
    assert LLAMA.missing(EMBEDDING_NEEDS) == "embeddings"
    with pytest.raises(InvalidRequest, match="model 'minilm' has no worker that supports generation"):
        embedder.require(Needs(), "minilm")
    assert embedder.union(LLAMA).generation and embedder.union(LLAMA).embeddings


def test_workers_that_predate_embeddings_still_generate() -> None:
    assert capabilities_from_json({"tools": True}).generation
    assert not capabilities_from_json({"embeddings": True, "generation": False}).generation
    with pytest.raises(InvalidRequest):
        capabilities_from_json({"generation": "no"})


def test_a_config_line_naming_only_embeddings_is_an_embedding_model() -> None:
    assert parse_capability_list("embeddings", 1) == Capabilities(embeddings=True, generation=False)
    assert parse_capability_list("embeddings,generation", 1).generation
    assert parse_capability_list("tools", 1).generation and parse_capability_list("none", 1).generation


def test_union_is_what_any_offer_can_do() -> None:
    both = LLAMA.union(Capabilities(vision=True, max_n=2))
    assert both == Capabilities(tools=True, structured_output=True, logprobs=True, vision=True, max_n=4)
    assert both.names() == ["tools", "structured_output", "logprobs", "vision"]


def test_claims_round_trip_and_are_bounded() -> None:
    assert capabilities_from_json(capabilities_to_json(LLAMA)) == LLAMA
    assert capabilities_from_json({"tools": True, "future_thing": 3}) == Capabilities(tools=True)
    for bad in ({"tools": "yes"}, {"max_n": 0}, {"max_n": 10**9}, {"max_n": True}, [1]):
        with pytest.raises(InvalidRequest):
            capabilities_from_json(bad)


def test_an_offer_carries_its_capabilities_over_the_wire() -> None:
    offer = ModelOffer("m", Q4, 4096, "llama.cpp", capabilities=LLAMA)
    assert offer_from_json(offer_to_json(offer, 0)) == offer


@pytest.mark.parametrize(
    ("entry", "label", "context"),
    [
        ({"id": "llama3.2:3b", "object": "model", "owned_by": "library"}, "unknown", 10_000_000),  # Ollama
        ({"id": "qwen2.5:7b-instruct-q4_K_M", "object": "model"}, "Q4_K_M", 10_000_000),
        ({"id": "Qwen/Qwen2.5-7B-Instruct-AWQ", "object": "model", "max_model_len": 32768}, "awq", 32768),  # vLLM
        ({"id": "Meta-Llama-3.1-8B-Instruct-FP8", "object": "model"}, "fp8", 10_000_000),
        ({"id": "SmolLM2-135M-Instruct.Q8_0.gguf", "object": "model"}, "Q8_0", 10_000_000),  # llama-server
    ],
)
def test_a_plain_servers_models_are_read_from_their_names(entry: dict[str, Any], label: str, context: int) -> None:
    (offer,) = offers_from_models_list({"object": "list", "data": [entry]})
    assert offer.model == entry["id"] and offer.quantization.label == label
    assert offer.context_length == context and offer.runtime == PLAIN_RUNTIME
    assert offer.capabilities == ASSUMED  # it refuses what it cannot do, itself


def test_upstream_lines_declare_capabilities() -> None:
    spec = parse_upstream("http://h:8000 model=m capabilities=tools,logprobs max_n=2", {})
    assert spec.offers[0].capabilities == Capabilities(tools=True, logprobs=True, max_n=2)
    assert parse_upstream("http://h:8000 model=m capabilities=none", {}).offers[0].capabilities == Capabilities()
    assert parse_upstream("http://h:8000 model=m", {}).offers[0].capabilities == ASSUMED
    assert parse_upstream("http://h:8000 model=m max_n=3", {}).offers[0].capabilities.max_n == 3
    assert parse_capability_list("vision", 1) == Capabilities(vision=True)
    with pytest.raises(ValueError, match="unknown capabilities telepathy"):
        parse_capability_list("tools,telepathy", 1)


def _fleet(*capabilities: Capabilities) -> Fleet:
    fleet = Fleet()
    for i, c in enumerate(capabilities):
        fleet.upsert(Worker(f"w{i}", f"http://w{i}"), (ModelOffer("m", Q4, 4096, "llama.cpp", capabilities=c),))
    return fleet


def _requirements(**fields: Any) -> Any:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **fields}
    return requirements_of(body, parse_chat_request(body))


TOOL = [{"type": "function", "function": {"name": "f"}}]


def test_requests_go_only_to_offers_that_can_serve_them() -> None:
    fleet = _fleet(Capabilities(), LLAMA)
    candidates = fleet.candidates("m")
    assert [c.state.worker.id for c in suitable(candidates, _requirements(tools=TOOL))] == ["w1"]
    assert len(suitable(candidates, _requirements())) == 2
    assert len(suitable(candidates, _requirements(tools=TOOL, tool_choice="none"))) == 2


@pytest.mark.parametrize(
    ("fields", "missing", "param"),
    [
        ({"tools": TOOL}, "tools", "tools"),
        ({"response_format": {"type": "json_object"}}, "structured_output", "response_format"),
        ({"logprobs": True}, "logprobs", "logprobs"),
        ({"n": 2}, "n=2", "n"),
    ],
)
def test_when_no_offer_can_the_400_names_the_capability_and_model(
    fields: dict[str, Any], missing: str, param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        suitable(_fleet(Capabilities(), Capabilities()).candidates("m"), _requirements(**fields))
    assert caught.value.status == 400 and caught.value.code == "unsupported_capability"
    assert caught.value.message == f"model 'm' has no worker that supports {missing}."
    assert caught.value.param == param
