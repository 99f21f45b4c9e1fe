"""Property tests: whatever bytes or maps a worker sends, decoders answer a record or InvalidRequest."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.announce import unpack_heartbeat, unpack_registration, unpack_welcome
from routing.consul_wire import entry_from_service
from routing.errors import InvalidRequest

TOKEN = "join-token-for-tests-0123456789"

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
KEYS = ["worker_id", "url", "offers", "capacity", "hardware", "in_flight", "queued", "heartbeat_interval_s", "ttl_s"]
maps = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), values, max_size=8)


def decoded_or_refused(decode: Any, data: Any) -> None:
    with contextlib.suppress(InvalidRequest):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | maps.map(lambda m: msgpack.packb(m, use_bin_type=True)))
def test_control_messages(data: bytes) -> None:
    for decode in (unpack_registration, unpack_heartbeat, unpack_welcome):
        decoded_or_refused(decode, data)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["ID", "Meta"]), values | st.dictionaries(st.text(max_size=20), values)))
def test_consul_entries(service: dict[str, Any]) -> None:
    decoded_or_refused(lambda s: entry_from_service(s, TOKEN, 1000.0), service)
