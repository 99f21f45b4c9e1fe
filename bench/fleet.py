"""Routing policies side by side on a simulated heterogeneous fleet.

    python -m bench.fleet [--quick] [--workers 60] [--seconds 300] [--seed 1]

The simulator (routing/sim) runs the production balancer, estimators and
health code against simulated workers: 3 regions, RTTs 5-150 ms, speeds that
differ 10x, one worker turning 20x slower a third of the way in and one dying
halfway. Poisson arrivals at 50% and 90% of the fleet's starting capacity,
through one gateway, then at 90% through four (each request to one at random;
each gateway knows only its own in-flight requests and what probes tell it).
Every policy sees the same arrivals and service times (same seed).
"""

from __future__ import annotations

import argparse
import logging
import time

from routing.policies import POLICIES
from routing.sim.engine import SimResult, simulate
from routing.sim.scenario import Scenario, heterogeneous_fleet

OURS = "expected-latency"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 30-worker, 60-second run")
    parser.add_argument("--workers", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gateways", type=int, default=4, help="gateways in the last run (each sees its own traffic)")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.seconds = 30, 60.0
    logging.basicConfig(level=logging.ERROR)  # ejections are expected here; keep the table readable

    fleet = heterogeneous_fleet(args.workers, seed=args.seed, duration_s=args.seconds)
    print(f"fleet: {args.workers} workers, {args.seconds:.0f} simulated s, seed {args.seed}")
    print("| gateways | load | policy | requests | p50 s | p99 s | success | p99 vs ours |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for gateways, load in ((1, 0.5), (1, 0.9), (args.gateways, 0.9)):
        scenario = Scenario(fleet, load=load, duration_s=args.seconds, seed=args.seed, gateways=gateways)
        results: dict[str, SimResult] = {}
        started = time.perf_counter()
        for name, make in POLICIES.items():
            results[name] = simulate(scenario, make)
        ours = results[OURS].percentile(0.99)
        for name, r in results.items():
            ratio = r.percentile(0.99) / ours
            label = f"**{name}** (ours)" if name == OURS else name
            print(
                f"| {gateways} | {load:.0%} | {label} | {r.requests} | {r.percentile(0.5):.2f} "
                f"| {r.percentile(0.99):.2f} | {r.success_rate:.2%} | {ratio:.2f}x |"
            )
        print(f"<!-- {gateways} gateway(s), {load:.0%}: simulated in {time.perf_counter() - started:.1f} s -->")


if __name__ == "__main__":
    main()
