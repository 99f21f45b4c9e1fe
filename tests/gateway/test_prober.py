"""Active probes against a real worker and a port nobody listens on."""

from __future__ import annotations

import random

import aiohttp

from bench.servers import Server, free_port
from gateway.prober import Prober
from gateway.tunnels import TunnelHub
from gateway.upstream import Upstreams
from routing.balancer import Balancer
from routing.fleet import Fleet, Worker
from tests.routing.fleets import offer


async def test_a_probe_measures_rtt_and_reads_the_load_and_a_dead_port_is_unreachable(worker: Server) -> None:
    fleet = Fleet()
    live = fleet.upsert(Worker("live", worker.url), (offer(),))
    dead = fleet.upsert(Worker("dead", f"http://127.0.0.1:{free_port()}"), (offer(),))
    balancer = Balancer(fleet, random.Random(1))
    async with aiohttp.ClientSession() as session:
        upstreams = Upstreams(session, TunnelHub(ping_interval_s=1.0, on_rtt=balancer.tunnel_rtt))
        prober = Prober(balancer, upstreams, interval_s=1.0, timeout_s=2.0, rng=random.Random(1))
        await prober.probe(live)
        await prober.probe(dead)
    assert live.health.reachable and live.rtt_s.measured and 0 < live.rtt_s.value < 1.0
    assert live.load.reported_at is not None and live.load.in_flight == 0 and live.load.queued == 0
    assert not dead.health.reachable and not dead.rtt_s.measured
