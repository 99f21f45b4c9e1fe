"""What a worker says about itself is bounded: hostile registrations, heartbeats and offers are 400s."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgpack
import pytest

from routing.announce import Hardware, Heartbeat, Registration, pack, unpack_heartbeat, unpack_registration
from routing.errors import InvalidRequest
from routing.fleet import ModelOffer
from routing.quantization import Quantization
from routing.wire import offer_from_json, offer_to_json

OFFER = ModelOffer("m", Quantization("Q8_0", 8, "int8"), 4096, "llama.cpp")
GOOD = Registration("w-1", "http://10.0.0.7:8081", "eu", "llama.cpp", Hardware(cpu="x", cores=2), 1, (OFFER,))


def with_fields(record: Registration | Heartbeat, **fields: Any) -> bytes:
    obj = msgpack.unpackb(pack(record))
    obj.update(fields)
    return msgpack.packb(obj)  # type: ignore[no-any-return]


def test_a_sane_registration_and_heartbeat_pass() -> None:
    assert unpack_registration(pack(GOOD)) == GOOD
    beat = Heartbeat("w-1", in_flight=2, queued=3, tokens_per_second=41.5, kv_cache_usage=0.5)
    assert unpack_heartbeat(pack(beat)) == beat


@pytest.mark.parametrize(
    "fields",
    [
        {"capacity": 2**62},
        {"capacity": 0},
        {"capacity": 1.5},
        {"region": "eu\nINFO forged log line"},
        {"region": "x" * 500},
        {"runtime": "\x1b[31mred"},
        {"hardware": {"cores": -1}},
        {"hardware": {"gpu_memory_bytes": 2**63 - 1}},
        {"offers": [offer_to_json(OFFER, 0)] * 20_000},
        {"offers": [{**offer_to_json(OFFER, 0), "context_length": 2**62}]},
        {"offers": [{**offer_to_json(OFFER, 0), "id": "m\nodel"}]},
        {"offers": [{**offer_to_json(OFFER, 0), "aliases": ["a"] * 1000}]},
        {
            "offers": [
                {**offer_to_json(OFFER, 0), "quantization": {"label": "Q8_0", "bits": float("nan"), "class": "int8"}}
            ]
        },
        {"offers": [{**offer_to_json(OFFER, 0), "quantization": {"label": "Q8_0", "bits": 8, "class": "made-up"}}]},
    ],
)
def test_hostile_registrations_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        unpack_registration(with_fields(GOOD, **fields))


@pytest.mark.parametrize(
    "fields",
    [
        {"queued": 10**12},
        {"in_flight": -5},
        {"tokens_per_second": float("nan")},
        {"tokens_per_second": float("inf")},
        {"kv_cache_usage": 7.0},
        {"queued": True},
    ],
)
def test_hostile_heartbeats_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        unpack_heartbeat(with_fields(Heartbeat("w-1", 0, 0), **fields))


def test_an_offer_round_trips() -> None:
    offer = replace(OFFER, aliases=("alias",), architecture="llama")
    assert offer_from_json(offer_to_json(offer, 0)) == offer
