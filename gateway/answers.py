"""What a worker's non-streaming answer must be before a client sees it.

A worker is a stranger's machine: its body is read with a size limit (never
buffered without a bound) and must be a JSON object in OpenAI's shape — a
completion with ``choices``, or an ``error`` for a 4xx. Anything else is an
invalid answer, which fails over like a broken connection.
"""

from __future__ import annotations

from typing import Any

from gateway.upstream import UpstreamResponse
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


def check_json_answer(payload: bytes, status: int) -> dict[str, Any]:
    """The parsed answer, if it is OpenAI-shaped for its status; ``BadAnswer`` if not."""
    try:
        obj = loads_bounded(payload)
    except ValueError:
        raise BadAnswer("a body that is not JSON (or was cut off)") from None
    if not isinstance(obj, dict):
        raise BadAnswer("a body that is not a JSON object")
    if status < 300:
        if not isinstance(obj.get("choices"), list):
            raise BadAnswer("a completion without a 'choices' array")
    elif not isinstance(obj.get("error"), dict):
        raise BadAnswer(f"a {status} without an 'error' object")
    return obj
