"""Latency estimators: time-decayed averages of what workers have shown us.

Samples age with time, not count (time constant ``tau_s``), so a burst of
requests does not wipe out history and a quiet worker's estimate is not
frozen by a single sample. ``PeakEwma`` jumps up to a worse sample at once and
comes down gradually (as Finagle's and Linkerd's peak-EWMA): a worker that
turns slow loses traffic immediately, and earns it back over a few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Ewma:
    value: float  # until the first sample: the prior (a conservative default)
    tau_s: float = 10.0
    stamp: float | None = None  # clock of the last sample; None = no sample yet

    def observe(self, sample: float, now: float) -> None:
        if self.stamp is None:
            self.value = sample  # the prior was a guess; real data replaces it
        else:
            weight = math.exp(-max(0.0, now - self.stamp) / self.tau_s)
            self.value = self.value * weight + sample * (1.0 - weight)
        self.stamp = now

    @property
    def measured(self) -> bool:
        return self.stamp is not None


@dataclass(slots=True)
class PeakEwma(Ewma):
    def observe(self, sample: float, now: float) -> None:
        if self.stamp is not None and sample > self.value:
            self.value = sample
            self.stamp = now
        else:
            Ewma.observe(self, sample, now)
