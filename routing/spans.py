"""Spans of time as people type them: ``90m``, ``24h``, ``7d``, ``3600s``."""

from __future__ import annotations

import re

_SPAN = re.compile(r"(\d{1,6})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def span_seconds(text: str) -> int | None:
    """The span in seconds, or None if ``text`` is not one."""
    match = _SPAN.fullmatch(text.strip())
    return None if match is None else int(match[1]) * _UNIT_S[match[2]]
