"""The tunnel's frames: how a worker behind NAT serves over one WebSocket it dialled out.

A worker that nobody can dial opens a WebSocket to each gateway
(``GET /internal/v1/workers/{id}/tunnel``), signed like every control message
(``routing.signing``: its id, key, a timestamp, a one-time nonce, the
signature); the gateway binds the tunnel to that id. Requests the gateway
routes to the worker then travel inside it as binary messages, one msgpack
array per frame, ``[kind, stream, ...]``:

====  ==========  ===========================  ==========================
kind  direction   fields after ``stream``      meaning
====  ==========  ===========================  ==========================
1     gw to w     method, path, headers, body  a request
2     w to gw     status, headers              its answer's head
3     w to gw     bytes (at most MAX_CHUNK)    a piece of the body
4     w to gw     (none)                       the body is complete
5     w to gw     message                      the request failed
6     gw to w     (none)                       cancel: the client left
7     gw to w     bytes                        more window (credit)
8     gw to w     sequence (stream 0)          ping
9     w to gw     sequence (stream 0)          pong
10    w to gw     status, headers, bytes       a whole answer (head, body
                                               of at most MAX_CHUNK, end)
====  ==========  ===========================  ==========================

``headers`` is a list of ``[name, value]`` pairs. Flow control is per stream:
the worker may have sent at most ``WINDOW`` body bytes the gateway has not
granted back (kind 7, sent as the client reads), so a slow client holds one
window per stream at the gateway, never an unbounded buffer, and one stream
never holds the others back. Each side accepts only its peer's kinds; any
frame that is not msgpack, names an unknown kind, breaks a bound or the
order (data before a head, more data than the window) closes that tunnel,
and only that tunnel.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import msgpack

from routing.announce import worker_path
from routing.bounds import bounded_int, bounded_list, printable
from routing.errors import InvalidRequest

WINDOW = 256 * 1024  # body bytes in flight per stream, not yet granted back
MAX_CHUNK = 32 * 1024  # one data frame's bytes: smaller than the window, so streams interleave
MAX_REQUEST_BODY = 16 * 1024 * 1024
MAX_HEADERS = 32
MAX_HEADER_VALUE = 8192
MAX_STREAMS = 1024  # open at once on one tunnel
MAX_STREAM_ID = 2**31 - 1
MAX_MESSAGE = 512
# What each side accepts in one WebSocket message: a worker's frames are a chunk and a little more.
MAX_WORKER_FRAME = MAX_CHUNK + MAX_HEADERS * (MAX_HEADER_VALUE + 128) + 1024
MAX_GATEWAY_FRAME = MAX_REQUEST_BODY + MAX_HEADERS * (MAX_HEADER_VALUE + 128) + 4096

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
_PATH = re.compile(r"/[A-Za-z0-9/_.~%-]{0,2047}")
METHODS = ("GET", "POST")


def tunnel_path(worker_id: str) -> str:
    return worker_path(worker_id) + "/tunnel"


class Kind(enum.IntEnum):
    REQUEST = 1
    HEAD = 2
    DATA = 3
    END = 4
    FAILED = 5
    CANCEL = 6
    CREDIT = 7
    PING = 8
    PONG = 9
    ANSWER = 10  # head, one chunk and end in one frame: a short answer's three frames as one


_FIELDS = {
    Kind.REQUEST: 6,
    Kind.HEAD: 4,
    Kind.DATA: 3,
    Kind.END: 2,
    Kind.FAILED: 3,
    Kind.CANCEL: 2,
    Kind.CREDIT: 3,
    Kind.PING: 3,
    Kind.PONG: 3,
    Kind.ANSWER: 5,
}
FROM_GATEWAY = frozenset({Kind.REQUEST, Kind.CANCEL, Kind.CREDIT, Kind.PING})
FROM_WORKER = frozenset({Kind.HEAD, Kind.DATA, Kind.END, Kind.FAILED, Kind.PONG, Kind.ANSWER})

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Request:
    stream: int
    method: str
    path: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class Head:
    stream: int
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Data:
    stream: int
    chunk: bytes


@dataclass(frozen=True, slots=True)
class End:
    stream: int


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole short answer: ``Head``, one ``Data`` (it fits the window) and ``End`` at once."""

    stream: int
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    stream: int
    message: str


@dataclass(frozen=True, slots=True)
class Cancel:
    stream: int


@dataclass(frozen=True, slots=True)
class Credit:
    stream: int
    amount: int


@dataclass(frozen=True, slots=True)
class Ping:
    sequence: int


@dataclass(frozen=True, slots=True)
class Pong:
    sequence: int


Frame = Request | Head | Data | End | Failed | Cancel | Credit | Ping | Pong | Answer


def encode(frame: Frame) -> bytes:
    fields: list[Any]
    match frame:
        case Request():
            fields = [Kind.REQUEST, frame.stream, frame.method, frame.path, _pairs(frame.headers), frame.body]
        case Head():
            fields = [Kind.HEAD, frame.stream, frame.status, _pairs(frame.headers)]
        case Data():
            fields = [Kind.DATA, frame.stream, frame.chunk]
        case End():
            fields = [Kind.END, frame.stream]
        case Failed():
            fields = [Kind.FAILED, frame.stream, frame.message]
        case Cancel():
            fields = [Kind.CANCEL, frame.stream]
        case Credit():
            fields = [Kind.CREDIT, frame.stream, frame.amount]
        case Ping():
            fields = [Kind.PING, 0, frame.sequence]
        case Pong():
            fields = [Kind.PONG, 0, frame.sequence]
        case Answer():
            fields = [Kind.ANSWER, frame.stream, frame.status, _pairs(frame.headers), frame.body]
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


def decode(data: bytes, accepted: frozenset[Kind]) -> Frame:
    """One frame from its peer, every field bounded; InvalidRequest for anything else."""
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise InvalidRequest(f"a tunnel frame that is not msgpack: {exc}") from None
    if not isinstance(fields, list) or len(fields) < 2:
        raise InvalidRequest("a tunnel frame must be an array [kind, stream, …]")
    kind_number = bounded_int(fields[0], "kind", 1, len(Kind))
    kind = Kind(kind_number)
    if kind not in accepted:
        raise InvalidRequest(f"a {kind.name} frame is not for this side of the tunnel")
    if len(fields) != _FIELDS[kind]:
        raise InvalidRequest(f"a {kind.name} frame with {len(fields)} fields")
    if kind in (Kind.PING, Kind.PONG):
        sequence = bounded_int(fields[2], "sequence", 0, 2**63 - 1)
        return Ping(sequence) if kind is Kind.PING else Pong(sequence)
    stream = bounded_int(fields[1], "stream", 1, MAX_STREAM_ID)
    match kind:
        case Kind.REQUEST:
            method = fields[2]
            if method not in METHODS:
                raise InvalidRequest("a tunnel request's method must be GET or POST")
            path = fields[3]
            if not isinstance(path, str) or not _PATH.fullmatch(path) or "//" in path or "/../" in path + "/":
                raise InvalidRequest("a tunnel request's path must be an absolute path on the worker")
            body = _bytes(fields[5], "body", MAX_REQUEST_BODY)
            return Request(stream, method, path, _headers(fields[4]), body)
        case Kind.HEAD:
            return Head(stream, bounded_int(fields[2], "status", 100, 599), _headers(fields[3]))
        case Kind.ANSWER:
            status, headers = bounded_int(fields[2], "status", 100, 599), _headers(fields[3])
            return Answer(stream, status, headers, _bytes(fields[4], "body", MAX_CHUNK))
        case Kind.DATA:
            return Data(stream, _bytes(fields[2], "chunk", MAX_CHUNK))
        case Kind.FAILED:
            return Failed(stream, printable(fields[2], "message", MAX_MESSAGE))
        case Kind.CREDIT:
            return Credit(stream, bounded_int(fields[2], "amount", 1, WINDOW))
        case Kind.CANCEL:
            return Cancel(stream)
        case _:
            return End(stream)


def _pairs(headers: Headers) -> list[list[str]]:
    return [[name, value] for name, value in headers]


def _headers(value: Any) -> Headers:
    pairs = []
    for pair in bounded_list(value, "headers", MAX_HEADERS):
        if not isinstance(pair, list) or len(pair) != 2:
            raise InvalidRequest("a tunnel header must be a [name, value] pair")
        name, text = pair
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidRequest("a tunnel header name must be 1-64 of letters, digits and -")
        pairs.append((name, printable(text, name, MAX_HEADER_VALUE)))
    return tuple(pairs)


def _bytes(value: Any, name: str, limit: int) -> bytes:
    if not isinstance(value, bytes) or len(value) > limit:
        raise InvalidRequest(f"'{name}' must be at most {limit} bytes")
    return value
