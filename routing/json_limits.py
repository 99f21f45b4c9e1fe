"""JSON from strangers (clients and workers alike), parsed with limits.

orjson is strict where the standard library is lenient: it refuses ``NaN``
and ``Infinity``, strings that are not valid Unicode (lone surrogates, bad
UTF-8) and numbers that overflow a double, and it is about five times faster,
which matters on the stream relay (every event is checked). Documents nested
deeper than ``MAX_DEPTH`` are refused too. Every refusal is a ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import orjson

# Deep enough for any real request (JSON schemas and tool definitions nest a
# dozen levels or so), far below where recursion in any consumer would fail.
MAX_DEPTH = 64


class JsonTooDeep(ValueError):
    pass


def loads_bounded(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse strictly; ``ValueError`` (``JsonTooDeep`` for nesting over ``max_depth``) for anything else."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from None
        raise
    # Fewer brackets than the limit cannot nest deeper than it: most documents skip the walk.
    text = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if text.count(b"[") + text.count(b"{") > max_depth and _depth_over(obj, max_depth):
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    return obj


def _depth_over(obj: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
