"""Numbers and strings from workers, checked before anything keeps them.

A worker is a stranger's machine: what it says about itself ends up in
routing arithmetic, metric labels, log lines and admin pages. So every number
must be finite and in a sane range, and every string short and printable
(no newlines to forge log lines, no control characters), or the message is
refused with a 400 naming the field.
"""

from __future__ import annotations

import math
from typing import Any

from routing.errors import InvalidRequest


def bounded_int(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}", param=name)
    return value


def bounded_float(value: Any, name: str, low: float, high: float) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be a number from {low:g} to {high:g}", param=name)
    return float(value)


def printable(value: Any, name: str, max_length: int, *, required: bool = False) -> str:
    """A short, printable, one-line string (empty allowed unless ``required``)."""
    if not isinstance(value, str) or len(value) > max_length or not value.isprintable() or (required and not value):
        raise InvalidRequest(f"'{name}' must be a printable string of at most {max_length} characters", param=name)
    return value


def bounded_list(value: Any, name: str, max_items: int) -> list[Any]:
    if not isinstance(value, list | tuple) or len(value) > max_items:
        raise InvalidRequest(f"'{name}' must be a list of at most {max_items} items", param=name)
    return list(value)
