"""Active probes against a real worker and a port nobody listens on."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.servers import Server, free_port
from gateway.prober import Prober
from gateway.tunnels import TunnelHub
from gateway.upstream import Upstreams
from routing.balancer import Balancer
from routing.discovery import Upsert
from routing.fleet import TUNNEL, Fleet, Worker
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


async def test_a_probe_of_where_a_worker_was_does_not_mark_where_it_is_now() -> None:
    """A worker that took a tunnel while a probe of its old address hung was marked unreachable by it."""
    arrived, answered = asyncio.Event(), asyncio.Event()

    async def slow_refusal(request: web.Request) -> web.Response:
        arrived.set()
        await answered.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/health", slow_refusal)
    old = TestServer(app, host="127.0.0.1")
    await old.start_server()
    fleet = Fleet()
    state = fleet.upsert(Worker("w", str(old.make_url("")).rstrip("/")), (offer(),))
    balancer = Balancer(fleet, random.Random(1))
    try:
        async with aiohttp.ClientSession() as session:
            upstreams = Upstreams(session, TunnelHub(ping_interval_s=1.0, on_rtt=balancer.tunnel_rtt))
            prober = Prober(balancer, upstreams, interval_s=1.0, timeout_s=5.0, rng=random.Random(1))
            probe = asyncio.create_task(prober.probe(state))
            await arrived.wait()
            balancer.apply(Upsert(replace(state.worker, via=TUNNEL), state.offers))  # it re-registered, tunnelled
            answered.set()
            await probe
        assert state.health.reachable  # the failed probe was about the old address
    finally:
        await old.close()
