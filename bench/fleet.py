"""Routing policies side by side on a simulated heterogeneous fleet.

    python -m bench.fleet [--quick] [--workers 60] [--seconds 300] [--seed 1]

The simulator (routing/sim) runs the production balancer, estimators and
health code against simulated workers: 3 regions, RTTs 5-150 ms, speeds that
differ 10x, one worker turning 20x slower a third of the way in and one dying
halfway. Poisson arrivals at 50% and 90% of the fleet's starting capacity,
through one gateway, then at 90% through four (each request to one at random;
each gateway knows only its own in-flight requests and what probes tell it).
Every policy sees the same arrivals and service times (same seed).

Then SLO routing on and off, at 70% load on a fleet of peers alike where one
worker is up 90% of the time and another's TTFT p99 is about 5 times its
peers' (``routing.sim.scenario.flaky_fleet``), with expected-latency in both.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from routing.health import Failure
from routing.policies import POLICIES, ExpectedLatency
from routing.sim.engine import MODEL, SimResult, Simulation, simulate
from routing.sim.scenario import Scenario, flaky_fleet, heterogeneous_fleet
from routing.slo_floors import parse_slo_floors

OURS = "expected-latency"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 30-worker, 60-second run")
    parser.add_argument("--workers", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gateways", type=int, default=4, help="gateways in the last run (each sees its own traffic)")
    parser.add_argument("--only", choices=("policies", "slo"), help="one of the two tables")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.seconds = 30, 60.0
    logging.basicConfig(level=logging.ERROR)  # ejections are expected here; keep the table readable

    if args.only != "slo":
        policies_table(args)
    if args.only != "policies":
        slo_table(args)


def policies_table(args: argparse.Namespace) -> None:
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


SLO_VARIANTS = (
    ("off (measured, not used)", {"slo_routing": False}),
    ("**weights** (default)", {}),
    ("weights + floor min_availability=0.95", {"floors": parse_slo_floors([f"{MODEL} min_availability=0.95"])}),
)


def slo_table(args: argparse.Namespace) -> None:
    size = max(6, args.workers * 2 // 5)
    scenario = Scenario(flaky_fleet(size, seed=args.seed), load=0.7, duration_s=args.seconds, seed=args.seed)
    flaky = next(w.id for w in scenario.workers if w.down_every_s)
    stalling = next(w.id for w in scenario.workers if w.stall_share)
    print(f"\nSLO routing: {size} workers alike, 70% load, {args.seconds:.0f} simulated s, seed {args.seed}")
    print(
        "| SLO routing | requests | p50 s | p99 s | p99.9 s | success | attempts cut by a crash "
        "| flaky worker's attempts | stalling worker's attempts | p99 vs off | p99.9 vs off |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    baseline: SimResult | None = None
    facts = ""
    for label, settings in SLO_VARIANTS:
        sim = Simulation(scenario, ExpectedLatency, **settings)  # type: ignore[arg-type]
        r = sim.run()
        if baseline is None:
            baseline = r
            reports = {w: sim.balancer.slos.of(w).report("1h", sim.now) for w in sim.nodes}
            peers = statistics.median(
                p for w, rep in reports.items() if w not in (flaky, stalling) and (p := rep.ttft_p99_s) is not None
            )
            facts = (
                f"<!-- measured with SLO routing off: {flaky} answered {reports[flaky].availability:.1%} of its "
                f"probes; {stalling}'s TTFT p99 was {(reports[stalling].ttft_p99_s or 0) / peers:.1f}x its peers' "
                f"median ({peers:.2f} s) -->"
            )
        print(
            f"| {label} | {r.requests} | {r.percentile(0.5):.2f} | {r.percentile(0.99):.2f} "
            f"| {r.percentile(0.999):.2f} | {r.success_rate:.2%} | {r.failures[Failure.ERROR]} "
            f"| {r.tried_on[flaky]} | {r.tried_on[stalling]} "
            f"| {r.percentile(0.99) / baseline.percentile(0.99):.2f}x "
            f"| {r.percentile(0.999) / baseline.percentile(0.999):.2f}x |"
        )
    print(facts)


if __name__ == "__main__":
    main()
