"""What a simulated fleet looks like: workers, their speed and their fate."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

# (region, RTT range from the gateway in seconds)
REGIONS = (("near", 0.005, 0.020), ("mid", 0.040, 0.080), ("far", 0.100, 0.150))


@dataclass(frozen=True, slots=True)
class SimWorker:
    id: str
    region: str
    rtt_s: float
    capacity: int  # generations at once
    service_s: float  # mean time of one generation
    slow_from_s: float | None = None  # from then on, generations take slow_factor times longer
    slow_factor: float = 1.0
    dies_at_s: float | None = None

    def service_factor(self, now: float) -> float:
        return self.slow_factor if self.slow_from_s is not None and now >= self.slow_from_s else 1.0

    def dead(self, now: float) -> bool:
        return self.dies_at_s is not None and now >= self.dies_at_s


@dataclass(frozen=True, slots=True)
class Scenario:
    workers: tuple[SimWorker, ...]
    load: float  # arrival rate as a share of the fleet's capacity at the start
    duration_s: float
    seed: int = 1
    service_sigma: float = 0.5  # log-normal spread of generation times around a worker's mean
    first_byte_timeout_s: float = 30.0
    deadline_s: float = 60.0
    probe_interval_s: float = 2.0
    max_attempts: int = 3
    gateways: int = 1  # each request goes to one at random; each sees only its own traffic

    @property
    def capacity_rps(self) -> float:
        return sum(w.capacity / w.service_s for w in self.workers)

    @property
    def arrival_rps(self) -> float:
        return self.load * self.capacity_rps


def heterogeneous_fleet(size: int = 60, *, seed: int = 1, duration_s: float = 300.0) -> tuple[SimWorker, ...]:
    """Consumer devices (one generation at a time, 0.8-2.5 s) and datacenter GPUs
    (four at a time, 0.25-0.8 s) in three regions: speeds differ 10x, RTTs 5-150 ms.
    One GPU worker turns 20x slower a third of the way in; another worker dies halfway."""
    rng = random.Random(seed)
    workers = []
    for i in range(size):
        region, low, high = REGIONS[i % len(REGIONS)]
        gpu = rng.random() < 0.3
        low_s, high_s = (0.25, 0.8) if gpu else (0.8, 2.5)
        workers.append(
            SimWorker(
                id=f"w{i:02d}-{region}",
                region=region,
                rtt_s=rng.uniform(low, high),
                capacity=4 if gpu else 1,
                service_s=math.exp(rng.uniform(math.log(low_s), math.log(high_s))),
            )
        )
    fastest_gpu = min((w for w in workers if w.capacity > 1), key=lambda w: w.service_s + w.rtt_s)
    slowing = workers.index(fastest_gpu)
    workers[slowing] = replace(fastest_gpu, slow_from_s=duration_s / 3, slow_factor=20.0)
    dying = (slowing + size // 2) % size
    workers[dying] = replace(workers[dying], dies_at_s=duration_s / 2)
    return tuple(workers)
