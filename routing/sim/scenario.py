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
    # Flapping: down (refusing connections, its generations lost) for down_for_s out of every down_every_s.
    down_every_s: float | None = None
    down_for_s: float = 0.0
    # Stalls: this share of its generations take stall_factor times longer (swapping, throttling).
    stall_share: float = 0.0
    stall_factor: float = 1.0

    def service_factor(self, now: float) -> float:
        return self.slow_factor if self.slow_from_s is not None and now >= self.slow_from_s else 1.0

    def dead(self, now: float) -> bool:
        if self.dies_at_s is not None and now >= self.dies_at_s:
            return True
        return self.down_every_s is not None and now % self.down_every_s >= self.down_every_s - self.down_for_s

    def next_crash(self, now: float) -> float | None:
        """When it next goes down, at or after ``now`` (None: never)."""
        crashes = [] if self.dies_at_s is None else [self.dies_at_s]
        if self.down_every_s is not None:
            period = self.down_every_s
            at = math.floor(now / period) * period + period - self.down_for_s
            crashes.append(at if at >= now else at + period)
        later = [c for c in crashes if c >= now]
        return min(later) if later else None

    def crashes(self, until_s: float) -> list[float]:
        """Every moment it goes down before ``until_s`` (after dying, it stays down)."""
        end = until_s if self.dies_at_s is None else min(until_s, self.dies_at_s)
        out = []
        if self.down_every_s is not None:
            at = self.down_every_s - self.down_for_s
            while at < end:
                out.append(at)
                at += self.down_every_s
        if self.dies_at_s is not None and self.dies_at_s < until_s:
            out.append(self.dies_at_s)
        return out


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
    workers = _devices_and_gpus(size, random.Random(seed))
    fastest_gpu = min((w for w in workers if w.capacity > 1), key=lambda w: w.service_s + w.rtt_s)
    slowing = workers.index(fastest_gpu)
    workers[slowing] = replace(fastest_gpu, slow_from_s=duration_s / 3, slow_factor=20.0)
    dying = (slowing + size // 2) % size
    workers[dying] = replace(workers[dying], dies_at_s=duration_s / 2)
    return tuple(workers)


def flaky_fleet(size: int = 24, *, seed: int = 1) -> tuple[SimWorker, ...]:
    """The SLO scenario: peers alike (GPUs, four generations at a time, 0.4-0.6 s) in three regions,
    where the fastest is up 90% of the time (down 6 s of every 60, losing what it was generating)
    and the next fastest stalls: 1 generation in 20 takes 25 times longer, so its TTFT p99 is
    about 5 times its peers' while its median stays the best."""
    rng = random.Random(seed)
    workers = []
    for i in range(size):
        region, low, high = REGIONS[i % len(REGIONS)]
        workers.append(
            SimWorker(
                id=f"w{i:02d}-{region}",
                region=region,
                rtt_s=rng.uniform(low, high),
                capacity=4,
                service_s=rng.uniform(0.4, 0.6),
            )
        )
    fastest = sorted(workers, key=lambda w: w.service_s + w.rtt_s)
    flaky, stalling = workers.index(fastest[0]), workers.index(fastest[1])
    workers[flaky] = replace(workers[flaky], id=f"{workers[flaky].id}-flaky", down_every_s=60.0, down_for_s=6.0)
    workers[stalling] = replace(
        workers[stalling], id=f"{workers[stalling].id}-stalling", stall_share=0.05, stall_factor=25.0
    )
    return tuple(workers)


def _devices_and_gpus(size: int, rng: random.Random) -> list[SimWorker]:
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
    return workers
