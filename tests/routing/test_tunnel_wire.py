"""The tunnel's frames: each one round-trips, and anything out of bounds is refused."""

from __future__ import annotations

import msgpack
import pytest

from routing import tunnel_wire as wire
from routing.errors import InvalidRequest

HEADERS = (("Content-Type", "application/json"), ("x-request-id", "r-1"))


@pytest.mark.parametrize(
    ("frame", "accepted"),
    [
        (wire.Request(1, "POST", "/v1/chat/completions", HEADERS, b'{"a":1}'), wire.FROM_GATEWAY),
        (wire.Cancel(7), wire.FROM_GATEWAY),
        (wire.Credit(7, wire.WINDOW), wire.FROM_GATEWAY),
        (wire.Ping(2**40), wire.FROM_GATEWAY),
        (wire.Head(3, 200, HEADERS), wire.FROM_WORKER),
        (wire.Data(3, b"x" * wire.MAX_CHUNK), wire.FROM_WORKER),
        (wire.End(3), wire.FROM_WORKER),
        (wire.Failed(3, "the worker's API failed: ClientOSError"), wire.FROM_WORKER),
        (wire.Pong(5), wire.FROM_WORKER),
        (wire.Answer(3, 200, HEADERS, b'{"ok":true}'), wire.FROM_WORKER),
    ],
)
def test_every_frame_round_trips_to_its_side_only(frame: wire.Frame, accepted: frozenset[wire.Kind]) -> None:
    data = wire.encode(frame)
    assert wire.decode(data, accepted) == frame
    other = wire.FROM_WORKER if accepted is wire.FROM_GATEWAY else wire.FROM_GATEWAY
    with pytest.raises(InvalidRequest):
        wire.decode(data, other)


@pytest.mark.parametrize(
    "fields",
    [
        [1, 1, "DELETE", "/v1/x", [], b""],  # a method the tunnel does not carry
        [1, 1, "GET", "http://elsewhere/", [], b""],  # not a path on the worker
        [1, 1, "GET", "/v1/../admin", [], b""],
        [1, 1, "GET", "//elsewhere/v1", [], b""],
        [1, 1, "GET", "/v1/x\r\nHost: y", [], b""],
        [1, 0, "GET", "/health", [], b""],  # stream 0 is the tunnel's own
        [1, 2**31, "GET", "/health", [], b""],
        [1, 1, "GET", "/health", [["Bad Name", "v"]], b""],
        [1, 1, "GET", "/health", [["a", "b"]] * (wire.MAX_HEADERS + 1), b""],
        [1, 1, "GET", "/health", [], "text, not bytes"],
        [7, 1, 0],  # no credit
        [7, 1, wire.WINDOW + 1],
        [8, 0, -1],
        [8, 0],  # a field short
        [True, 1],
        {"kind": 1},
    ],
)
def test_out_of_bounds_frames_from_the_gateway_are_refused(fields: object) -> None:
    with pytest.raises(InvalidRequest):
        wire.decode(msgpack.packb(fields), wire.FROM_GATEWAY)


@pytest.mark.parametrize(
    "fields",
    [
        [3, 1, b"x" * (wire.MAX_CHUNK + 1)],
        [2, 1, 99, []],
        [2, 1, 200, [["X-Evil", "a\nb"]]],
        [5, 1, "x" * (wire.MAX_MESSAGE + 1)],
        [9, 0, float("nan")],
        [10, 1, 200, [], b"x" * (wire.MAX_CHUNK + 1)],  # a whole answer is one chunk at most
        [10, 1, 600, [], b""],
        [10, 1, 200, []],
    ],
)
def test_out_of_bounds_frames_from_a_worker_are_refused(fields: object) -> None:
    with pytest.raises(InvalidRequest):
        wire.decode(msgpack.packb(fields), wire.FROM_WORKER)


def test_a_body_over_the_limit_is_refused() -> None:
    fields = [1, 1, "POST", "/v1/completions", [], b"x" * (wire.MAX_REQUEST_BODY + 1)]
    with pytest.raises(InvalidRequest):
        wire.decode(msgpack.packb(fields, use_bin_type=True), wire.FROM_GATEWAY)
