"""As many generations at once as a model has slots, with a bounded wait queue.

Each running generation holds one of the model's batch slots; others wait
here, up to ``max_queue``. Beyond that the worker says
``503 Retry-After`` at once instead of letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import math

from routing.errors import Busy


class Admission:
    def __init__(self, max_queue: int, *, model: str, slots: int = 1):
        self._slot = asyncio.Semaphore(slots)
        self._slots = slots
        self._max_queue = max_queue
        self._model = model
        self.waiting = 0
        self.running = 0
        # Recent generation time (EWMA), for an honest Retry-After.
        self._mean_duration_s = 1.0

    async def acquire(self) -> None:
        if self._slot.locked() and self.waiting >= self._max_queue:
            raise Busy(
                f"The worker is at capacity for '{self._model}' "
                f"({self.running} generating, {self.waiting} waiting); retry later.",
                retry_after_s=self.retry_after_s(),
                code="worker_busy",
            )
        self.waiting += 1
        try:
            await self._slot.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def release(self, duration_s: float) -> None:
        self.running -= 1
        self._mean_duration_s = 0.8 * self._mean_duration_s + 0.2 * duration_s
        self._slot.release()

    def retry_after_s(self) -> int:
        # Each slot frees up after about a generation's time: the queue drains ``slots`` at a time.
        expected = self._mean_duration_s * (self.waiting // self._slots + 1)
        return max(1, min(60, math.ceil(expected)))


class Admitted:
    """What a runtime that admits through ``_admission`` tells heartbeats and ``/health``."""

    _admission: Admission

    @property
    def in_flight(self) -> int:
        return self._admission.running

    @property
    def queued(self) -> int:
        return self._admission.waiting
