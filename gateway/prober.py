"""Active probes: ``GET /health`` on every worker, jittered, timing the round trip.

A probe that gets ``200`` gives the worker's RTT and the load it reports
(requests in flight and queued, from all gateways); one that fails marks it
unreachable until a later probe gets through. Probes are spread over the
interval at random, so a fleet is not hit in lockstep by every gateway.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import aiohttp

from routing.balancer import Balancer
from routing.fleet import WorkerState, authorization
from routing.health_report import load_from_report

log = logging.getLogger(__name__)


class Prober:
    def __init__(
        self,
        balancer: Balancer,
        session: aiohttp.ClientSession,
        *,
        interval_s: float,
        timeout_s: float,
        rng: random.Random,
    ):
        self._balancer = balancer
        self._session = session
        self._interval_s = interval_s
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
        report: Any = None
        try:
            url, headers = state.worker.url + state.worker.health_path, authorization(state.worker)
            async with self._session.get(url, timeout=self._timeout, headers=headers) as resp:
                reached = resp.status == 200
                if reached and resp.content_type == "application/json":
                    report = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            reached = False
        now = loop.time()
        if not reached:
            if state.health.reachable:
                log.warning("worker %s failed its health probe", state.worker.id)
            self._balancer.probed(state, rtt_s=None, now=now)
            return
        if not state.health.reachable:
            log.info("worker %s answers its health probe again", state.worker.id)
        self._balancer.probed(state, rtt_s=now - started, now=now, load=load_from_report(report))

    async def _probe_later(self, state: WorkerState, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.probe(state)
