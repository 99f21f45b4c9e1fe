"""What one routing decision costs: ``Balancer.plan`` on large fleets.

    python -m bench.decision_cost [--picks 20000]

(a) 10,000 workers offering 100 models (100 workers per model), the issue's
target: median <= 50 us. (b) The fleet grows 100 -> 10,000 workers while the
requested model keeps 100 offers: the cost must stay flat (the index is by
model, and beyond 16 ready workers a pick scores a sample of 16).
Each pick is followed by the dispatch/first-byte/finished feedback a real
request gives, so estimates move as they would under traffic.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from routing.balancer import Balancer
from routing.fleet import Fleet, ModelOffer, Worker
from routing.health import Status
from routing.quantization import Quantization
from routing.suitability import Requirements

QUANT = Quantization("Q4_K_M", 4, "int4")
TARGET = "model-000"


def build(workers: int, models: int, target_offers: int) -> Balancer:
    """``target_offers`` workers serve TARGET; the rest spread over the other models."""
    fleet = Fleet()
    rng = random.Random(1)
    for i in range(workers):
        model = TARGET if i < target_offers else f"model-{1 + i % (models - 1):03d}"
        state = fleet.upsert(
            Worker(f"w{i:05d}", f"http://10.0.{i // 250}.{i % 250}:8081", region=("eu", "us", "ap")[i % 3]),
            (ModelOffer(model, QUANT, 8192, "llama.cpp"),),
        )
        state.rtt_s.observe(rng.uniform(0.005, 0.15), 0.0)
        state.service_estimate(model).observe(rng.uniform(0.2, 2.0), 0.0)
        state.health.status = Status.HEALTHY
    return Balancer(fleet, random.Random(2))


def median_pick_us(balancer: Balancer, picks: int) -> float:
    req = Requirements(TARGET, min_context=512, region="eu")
    samples = []
    now = 1.0
    for _ in range(picks):
        now += 0.001
        started = time.perf_counter_ns()
        plan = balancer.plan(req, now)
        samples.append(time.perf_counter_ns() - started)
        dispatch = balancer.dispatch(plan[0], now)
        balancer.first_byte(dispatch, now + 0.3)
        balancer.finished(dispatch)
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--picks", type=int, default=20000)
    args = parser.parse_args()
    print("| fleet | models | offers of the model | median pick µs | vs 100-worker fleet |")
    print("|---:|---:|---:|---:|---:|")
    baseline = median_pick_us(build(100, 100, 100), args.picks)
    for workers in (100, 1000, 10000):
        cost = baseline if workers == 100 else median_pick_us(build(workers, 100, 100), args.picks)
        print(f"| {workers} | 100 | 100 | {cost:.1f} | {cost / baseline:.2f}x |")
    print("target: median <= 50 µs at 10,000 workers / 100 models, flat as the fleet grows")


if __name__ == "__main__":
    main()
