"""Per-worker SLOs: is each worker keeping its promises, over sliding windows?

Fed by the gateway's probes (availability) and by every attempt the balancer
sees (success ratio, time to first byte), plus what each answer produced
(tokens per second of serving). Each window is a ring of buckets: 1 h in
1-minute buckets, 24 h in 15-minute ones, 30 d in 6-hour ones, so memory per
worker is fixed and old samples fall off by themselves. Pure: the caller
passes the clock, so every figure is reproducible in tests.

Routing uses the 1 h window as an error-budget burn rate (as SRE practice
does): with a 99% objective, a worker failing 10% of its probes burns its
budget 10 times too fast, and its weight is 1/10 of a healthy one's. A worker
whose TTFT p99 is more than ``ttft_p99_vs_peers`` times its peers' median
loses weight in proportion. (Judging the tail, p99 over p50, instead was
tried in ``python -m bench.fleet``: no better on a mixed fleet, and it let a
stalling worker keep more traffic.) The weight never reaches zero (``min_weight``): the worker keeps a trickle of
traffic, and all of it when it is the only one.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

# Time to first token, in log-spaced bins from 1 ms to ~5 min (each edge 1.3 times the last).
TTFT_EDGES = tuple(0.001 * 1.3**i for i in range(49))


@dataclass(frozen=True, slots=True)
class WindowSpec:
    name: str
    span_s: float
    bucket_s: float


WINDOWS = (WindowSpec("1h", 3600, 60), WindowSpec("24h", 86400, 900), WindowSpec("30d", 30 * 86400, 6 * 3600))
ROUTING_WINDOW = "1h"


@dataclass(frozen=True, slots=True)
class SloPolicy:
    availability: float = 0.99  # objectives
    success_ratio: float = 0.99
    ttft_p99_vs_peers: float = 2.0
    min_samples: int = 20  # fewer in the window: no verdict
    min_weight: float = 0.05


@dataclass(slots=True)
class _Bucket:
    start: float
    probes: int = 0
    probes_ok: int = 0
    requests: int = 0
    requests_ok: int = 0
    ttft: list[int] = field(default_factory=lambda: [0] * (len(TTFT_EDGES) + 1))
    tokens: int = 0
    serving_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SloReport:
    window: str
    probes: int
    availability: float | None  # share of probes answered
    requests: int
    success_ratio: float | None  # share of attempts that answered
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    tokens_per_second: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "probes": self.probes,
            "availability": _rounded(self.availability, 5),
            "requests": self.requests,
            "success_ratio": _rounded(self.success_ratio, 5),
            "ttft_p50_s": _rounded(self.ttft_p50_s, 4),
            "ttft_p99_s": _rounded(self.ttft_p99_s, 4),
            "tokens_per_second": _rounded(self.tokens_per_second, 1),
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(slots=True)
class _Window:
    """A ring of buckets with running totals, so a report costs the same however full the window is."""

    spec: WindowSpec
    buckets: deque[_Bucket] = field(default_factory=deque)
    total: _Bucket = field(default_factory=lambda: _Bucket(0.0))

    def bucket(self, now: float) -> _Bucket:
        """The bucket for a sample at ``now``; samples come in time order (a restore replays them so)."""
        start = math.floor(now / self.spec.bucket_s) * self.spec.bucket_s
        if not self.buckets or self.buckets[-1].start < start:
            self.buckets.append(_Bucket(start))
            self._expire(now)
        return self.buckets[-1]

    def _expire(self, now: float) -> None:
        while self.buckets and self.buckets[0].start <= now - self.spec.span_s - self.spec.bucket_s:
            gone, t = self.buckets.popleft(), self.total
            t.probes -= gone.probes
            t.probes_ok -= gone.probes_ok
            t.requests -= gone.requests
            t.requests_ok -= gone.requests_ok
            t.tokens -= gone.tokens
            t.serving_s -= gone.serving_s
            for i, n in enumerate(gone.ttft):
                if n:
                    t.ttft[i] -= n
        if not self.buckets:
            self.total = _Bucket(0.0)  # no float drift left behind

    def report(self, now: float) -> SloReport:
        self._expire(now)
        t = self.total
        return SloReport(
            window=self.spec.name,
            probes=t.probes,
            availability=t.probes_ok / t.probes if t.probes else None,
            requests=t.requests,
            success_ratio=t.requests_ok / t.requests if t.requests else None,
            ttft_p50_s=_quantile(t.ttft, 0.50),
            ttft_p99_s=_quantile(t.ttft, 0.99),
            tokens_per_second=t.tokens / t.serving_s if t.serving_s > 1e-9 else None,
        )


def _quantile(counts: list[int], q: float) -> float | None:
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return TTFT_EDGES[min(i, len(TTFT_EDGES) - 1)]  # the bin's upper edge: never flattering
    return TTFT_EDGES[-1]


@dataclass(slots=True)
class WorkerSlo:
    windows: dict[str, _Window] = field(default_factory=lambda: {w.name: _Window(w) for w in WINDOWS})

    def probe(self, reached: bool, now: float) -> None:
        for w in self.windows.values():
            for b in (w.bucket(now), w.total):
                b.probes += 1
                b.probes_ok += reached

    def attempt(self, ok: bool, ttft_s: float | None, now: float) -> None:
        at = None if ttft_s is None else bisect.bisect_left(TTFT_EDGES, max(0.0, ttft_s))
        for w in self.windows.values():
            for b in (w.bucket(now), w.total):
                b.requests += 1
                b.requests_ok += ok
                if at is not None:
                    b.ttft[at] += 1

    def served(self, tokens: int, serving_s: float, now: float) -> None:
        for w in self.windows.values():
            for b in (w.bucket(now), w.total):
                b.tokens += tokens
                b.serving_s += max(0.0, serving_s)

    def report(self, window: str, now: float) -> SloReport:
        return self.windows[window].report(now)


def weight(report: SloReport, policy: SloPolicy, peers_ttft_p99_s: float | None) -> float:
    """Routing weight in [min_weight, 1] from one window's report: 1 while the worker meets its objectives."""
    w = 1.0
    if report.probes >= policy.min_samples and report.availability is not None:
        w /= max(1.0, (1 - report.availability) / (1 - policy.availability))
    if report.requests >= policy.min_samples and report.success_ratio is not None:
        w /= max(1.0, (1 - report.success_ratio) / (1 - policy.success_ratio))
    if report.requests >= policy.min_samples and report.ttft_p99_s and peers_ttft_p99_s:
        w *= min(1.0, policy.ttft_p99_vs_peers * peers_ttft_p99_s / report.ttft_p99_s)
    return max(policy.min_weight, w)


@dataclass(slots=True)
class SloBook:
    policy: SloPolicy = field(default_factory=SloPolicy)
    workers: dict[str, WorkerSlo] = field(default_factory=dict)

    def of(self, worker_id: str) -> WorkerSlo:
        slo = self.workers.get(worker_id)
        if slo is None:
            slo = self.workers[worker_id] = WorkerSlo()
        return slo

    def forget(self, worker_id: str) -> None:
        self.workers.pop(worker_id, None)

    def weights(self, now: float) -> dict[str, float]:
        return {worker_id: verdict.weight for worker_id, verdict in self.judge(now).items()}

    def judge(self, now: float, present: Iterable[str] | None = None) -> dict[str, SloVerdict]:
        """Every worker's (or every ``present`` one's) routing window and weight, each TTFT p99 judged against
        the median of the others'."""
        ids = self.workers if present is None else [w for w in present if w in self.workers]
        reports = {w: self.workers[w].report(ROUTING_WINDOW, now) for w in ids}
        p99s = {
            w: r.ttft_p99_s
            for w, r in reports.items()
            if r.ttft_p99_s is not None and r.requests >= self.policy.min_samples
        }
        ordered = sorted(p99s.values())
        out = {}
        for worker_id, report in reports.items():
            peers = _median_without(ordered, p99s.get(worker_id))
            out[worker_id] = SloVerdict(weight(report, self.policy, peers), report)
        return out


def _median_without(ordered: list[float], own: float | None) -> float | None:
    """The (upper) median of ``ordered`` once one copy of ``own`` is left out, without copying the list."""
    n = len(ordered) - (own is not None)
    if n <= 0:
        return None
    k = n // 2
    if own is None:
        return ordered[k]
    i = bisect.bisect_left(ordered, own)  # where its own value sits; equal values are interchangeable
    return ordered[k] if k < i else ordered[k + 1]


@dataclass(frozen=True, slots=True)
class SloVerdict:
    weight: float  # for routing, in [min_weight, 1]
    report: SloReport  # the routing window's figures, for per-model floors
