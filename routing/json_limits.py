"""JSON from strangers (clients and workers alike), parsed with limits.

``json.loads`` accepts ``NaN`` and ``Infinity`` and recurses once per level
of nesting, so a deep enough document raises ``RecursionError`` from deep
inside the parser. Here both are a ``ValueError`` like any malformed input,
and documents deeper than ``MAX_DEPTH`` are refused before anyone walks them.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Deep enough for any real request (JSON schemas and tool definitions nest a
# dozen levels or so), far below where recursion in any consumer would fail.
MAX_DEPTH = 64


class JsonTooDeep(ValueError):
    pass


def loads_bounded(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises ``ValueError`` for non-finite constants and nesting over ``max_depth``."""
    try:
        obj = _DECODER.decode(data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the walk.
    text = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if text.count(b"[") + text.count(b"{") > max_depth and _depth_over(obj, max_depth):
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Built once: json.loads with any keyword argument builds a new decoder per call (twice the cost).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


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


# A JSON escape of a surrogate code point: pairs (emoji from ensure_ascii encoders) are common and
# fine; only when one appears are the strings walked for a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def lone_surrogate_in(raw: bytes, obj: Any) -> bool:
    """Whether a parsed document holds a string that is not valid Unicode (a lone surrogate).

    Such a string cannot be encoded as UTF-8 again, so it would break whoever
    re-encodes it (a tokenizer, a log line, the forwarded body).
    """
    if not _SURROGATE_ESCAPE.search(raw) and not _has_surrogate_bytes(raw):
        return False
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _has_surrogate_bytes(raw: bytes) -> bool:
    # json.loads decodes bytes with "surrogatepass": UTF-8-encoded surrogates (ED A0..BF xx) pass too.
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
