"""What a worker's non-streaming answer must be before a client sees it.

A worker is a stranger's machine: its body is read with a size limit (never
buffered without a bound) and must be a JSON object in OpenAI's shape — a
completion with ``choices``; embeddings with one finite vector per input, all
of one length, in the encoding asked for; or an ``error`` for a 4xx. Anything
else is an invalid answer, which fails over like a broken connection.
"""

from __future__ import annotations

import array
import base64
import binascii
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.upstream import UpstreamResponse
from routing.embedding_requests import EmbeddingRequest, EncodingFormat
from routing.json_limits import loads_bounded

JSON_TYPES = ("application/json",)


class BadAnswer(ValueError):
    """A worker's answer is not what an OpenAI server sends (wrong type, shape or size)."""


async def read_bounded(upstream: UpstreamResponse, limit: int) -> bytes:
    """The whole body, or ``BadAnswer`` as soon as it passes ``limit`` bytes."""
    length = upstream.content_length
    if length is not None:
        if length > limit:
            raise BadAnswer(f"a body of {length} bytes, over the {limit}-byte limit")
        return await upstream.read()  # exactly Content-Length bytes: bounded already
    body = bytearray()
    async for chunk in upstream.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise BadAnswer(f"a body over the {limit}-byte limit")
    return bytes(body)


@dataclass(frozen=True, slots=True)
class AnswerShape:
    """What a successful non-streaming answer must hold, for its endpoint."""

    check: Callable[[dict[str, Any]], None]  # raises BadAnswer
    vectors: bool = False  # embeddings: bounded by the proxy's max_embeddings_bytes, not max_response_bytes


def _has_choices(obj: dict[str, Any]) -> None:
    if not isinstance(obj.get("choices"), list):
        raise BadAnswer("a completion without a 'choices' array")


completion_answer = AnswerShape(_has_choices)


def embeddings_answer(request: EmbeddingRequest) -> AnswerShape:
    """One vector per input of ``request``, each index once, all as long, finite, in its encoding."""
    count, encoding = len(request.inputs), request.encoding_format

    def check(obj: dict[str, Any]) -> None:
        data = obj.get("data")
        if not isinstance(data, list) or len(data) != count:
            raise BadAnswer(f"an embeddings answer without {count} item(s) in 'data'")
        seen: set[int] = set()
        widths: set[int] = set()
        for item in data:
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count or index in seen:
                raise BadAnswer("an embeddings answer with a missing, repeated or out-of-range index")
            seen.add(index)
            widths.add(_vector_width(item.get("embedding"), encoding))
        if len(widths) > 1:
            raise BadAnswer("an embeddings answer with vectors of different lengths")

    return AnswerShape(check, vectors=True)


def _vector_width(vector: Any, encoding: EncodingFormat) -> int:
    """How many values a vector holds, if they are all finite numbers (the standard library only: the
    gateway's image has no numpy). orjson already refuses JSON numbers that overflow a double."""
    if encoding == "base64":
        if not isinstance(vector, str):
            raise BadAnswer("a base64 embedding that is not a string")
        try:
            raw = base64.b64decode(vector, validate=True)
        except (binascii.Error, ValueError):
            raise BadAnswer("an embedding that is not base64") from None
        if not raw or len(raw) % 4:
            raise BadAnswer("a base64 embedding that is not float32s")
        values = array.array("f", raw)
        if sys.byteorder != "little":
            values.byteswap()
        if not all(map(math.isfinite, values)):
            raise BadAnswer("an embedding with a value that is not finite")
        return len(values)
    if not isinstance(vector, list) or not vector or not all(map(_is_number, vector)):
        raise BadAnswer("an embedding that is not a non-empty array of numbers")
    return len(vector)


def _is_number(value: Any) -> bool:
    return type(value) is float or type(value) is int


def check_json_answer(payload: bytes, status: int, shape: AnswerShape = completion_answer) -> dict[str, Any]:
    """The parsed answer, if it is OpenAI-shaped for its status; ``BadAnswer`` if not."""
    try:
        obj = loads_bounded(payload)
    except ValueError:
        raise BadAnswer("a body that is not JSON (or was cut off)") from None
    if not isinstance(obj, dict):
        raise BadAnswer("a body that is not a JSON object")
    if status < 300:
        shape.check(obj)
    elif not isinstance(obj.get("error"), dict):
        raise BadAnswer(f"a {status} without an 'error' object")
    return obj
