"""Property test of the gateway's request path before a worker: no body gives anything but a clean error.

The same steps as ``gateway.api`` runs on every request (decode, parse,
requirements, token estimate and rate-limit arithmetic, plan, forwarded
body), on fuzzed bodies: each either passes or raises an ``InferCDNError``
whose status is a 4xx — or the 503 of a quantization nobody offers, which
is about the fleet, not the input. Never another exception (a 500).
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.balancer import Balancer
from routing.errors import InferCDNError, NoSuitableWorker
from routing.openai_requests import decode_json_object, parse_chat_request, parse_completion_request
from routing.ratelimit import Limits, RateLimiter
from routing.suitability import estimate_prompt_tokens, forwarded_body, requirements_of
from tests.routing.fleets import fleet_of

FIELDS = [
    "model", "messages", "prompt", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop",
    "seed", "stream", "stream_options", "n", "frequency_penalty", "presence_penalty", "quantizations",
    "region", "tools", "response_format", "logprobs", "user",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["m", "m:Q4_K_M", "m:int8", "user", "assistant", "\ud800", "", "x" * 300])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "bad"]), "content": values}),
    max_size=3,
)
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), values, max_size=8) | st.fixed_dictionaries(
    {"model": st.sampled_from(["m", "m:Q4_K_M", "nope"]), "messages": messages},
    optional={k: values for k in FIELDS[3:]},
)
raw_bodies = (
    bodies.map(lambda b: json.dumps(b).encode())
    | st.binary(max_size=200)
    | st.sampled_from(
        [b"[" * 5000, b'{"a":' * 3000, b"NaN", b'{"model": "m", "temperature": Infinity}', b"\xed\xa0\x80"]
    )
)


def through_the_gateway(raw: bytes, path_is_chat: bool) -> None:
    fleet, _ = fleet_of("w")
    balancer = Balancer(fleet, random.Random(1))
    body: dict[str, Any] = decode_json_object(raw)
    request = (parse_chat_request if path_is_chat else parse_completion_request)(body)
    requirements = requirements_of(body, request)
    fleet.model_id(requirements.model)
    tokens = estimate_prompt_tokens(request) + (request.sampling.max_tokens or 256)
    RateLimiter().admit("key", Limits(requests_per_minute=10**6, tokens_per_minute=10**12), tokens, 0.0)
    for candidate in balancer.plan(requirements, 1.0):
        forwarded_body(raw, body, requirements, candidate)


@settings(max_examples=3000, deadline=None)
@given(raw_bodies, st.booleans())
def test_no_body_gets_a_server_error(raw: bytes, path_is_chat: bool) -> None:
    try:
        through_the_gateway(raw, path_is_chat)
    except NoSuitableWorker:
        pass
    except InferCDNError as exc:
        assert 400 <= exc.status < 500, exc
