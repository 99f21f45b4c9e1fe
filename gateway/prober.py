"""Active probes: ``GET /health`` on every worker, jittered, timing the round trip.

A probe that gets ``200`` gives the worker's RTT and the load it reports
(requests in flight and queued, from all gateways); one that fails marks it
unreachable until a later probe gets through. Probes are spread over the
interval at random, so a fleet is not hit in lockstep by every gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import aiohttp

from gateway.answers import read_bounded
from gateway.tunnels import TunnelBroken
from gateway.upstream import Upstreams
from routing.balancer import Balancer
from routing.fleet import TUNNEL, WorkerState, authorization
from routing.health_report import load_from_report

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 64 * 1024  # a health report is a few hundred bytes


class Prober:
    def __init__(
        self,
        balancer: Balancer,
        upstreams: Upstreams,
        *,
        interval_s: float,
        timeout_s: float,
        rng: random.Random,
    ):
        self._balancer = balancer
        self._upstreams = upstreams
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._rng = rng

    async def run(self) -> None:
        while True:
            workers = self._balancer.fleet.workers()
            await asyncio.gather(*(self._probe_later(w, self._rng.uniform(0, self._interval_s / 2)) for w in workers))
            await asyncio.sleep(self._interval_s * self._rng.uniform(0.4, 0.6))

    async def probe(self, state: WorkerState) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        worker = state.worker
        report: Any = None
        try:
            async with asyncio.timeout(self._timeout_s):
                resp = await self._upstreams.send(
                    worker, "GET", worker.health_path, b"", authorization(worker), self._timeout
                )
                async with resp:
                    reached = resp.status == 200
                    if reached and resp.content_type == "application/json":
                        report = json.loads(await read_bounded(resp, MAX_REPORT_BYTES))
        except (aiohttp.ClientError, TunnelBroken, TimeoutError, ValueError):
            reached = False
        now = loop.time()
        if (state.worker.url, state.worker.via) != (worker.url, worker.via):
            return  # it moved (or took a tunnel) while we asked: this answer is about where it was
        if not reached:
            if state.health.reachable:
                log.warning("worker %s failed its health probe", worker.id)
            self._balancer.probed(state, rtt_s=None, now=now)
            return
        if not state.health.reachable:
            log.info("worker %s answers its health probe again", worker.id)
        # A tunnelled worker's round trip comes from the tunnel's pings; this one crossed its local hop too.
        rtt_s = None if worker.via == TUNNEL else now - started
        self._balancer.probed(state, rtt_s=rtt_s, reached=True, now=now, load=load_from_report(report))

    async def _probe_later(self, state: WorkerState, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.probe(state)
