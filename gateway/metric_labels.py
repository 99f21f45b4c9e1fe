"""Bounds on metric labels whose values come from workers (model names, worker ids, quantizations, regions).

A hostile or careless fleet can name as many models or regions as it likes;
each distinct label value is a series Prometheus keeps for good. So each such
label admits at most ``limit`` distinct values and the rest read ``other``,
and a value the fleet no longer has is forgotten (its series removed) so that
the slot is free again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

OTHER = "other"


class LabelCap:
    """Distinct values of one label, first come first kept, at most ``limit`` of them."""

    def __init__(self, limit: int):
        self.limit = limit
        self._kept: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._kept:
            return value
        if len(self._kept) < self.limit:
            self._kept.add(value)
            return value
        return OTHER

    def keep_only(self, live: Iterable[str]) -> list[str]:
        """Forget the values not in ``live``; returns them, so that their series can be removed."""
        gone = self._kept.difference(live)
        self._kept -= gone
        return sorted(gone)


def most_common(tally: Counter[str], limit: int) -> set[str]:
    """The ``limit`` values counted most (ties by name, so that a scrape is deterministic)."""
    ranked = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
    return {value for value, _ in ranked[:limit]}
