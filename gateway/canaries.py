"""The gateway's canaries: synthetic greedy requests to workers with little greedy traffic, always audited.

Which worker and when is ``routing.canaries``. A canary goes through this
gateway's own application in-process, as a client's request would (routing,
accounting, the ledger, the audit record), marked with ``CANARY``: that mark
can only be set here (no header or path sets it), and it pins the request to
its worker, skips the client's key (usage is booked to the key id
``canary``), and sends the answer to the auditor whatever the audit rate.
The worker sees a request like any other. Failures are counted, never
retried: the next one is due only after more client traffic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable

from aiohttp import web
from multidict import CIMultiDict

from gateway.metrics import GatewayMetrics
from routing import tunnel_wire as wire
from routing.balancer import Balancer
from routing.canaries import CanaryPlan, canary_body
from routing.in_process import InProcessApi, Window

log = logging.getLogger(__name__)

CANARY = web.RequestKey("canary_worker", str)  # the worker a canary must go to; set only in-process
CANARY_KEY_ID = "canary"  # whose usage a canary's is, in the ledger
CHAT_PATH = "/v1/chat/completions"


class Canaries:
    def __init__(
        self,
        app: web.Application,
        balancer: Balancer,
        metrics: GatewayMetrics,
        plan: CanaryPlan,
        rng: random.Random,
        *,
        checkable: Callable[[str], bool],
        interval_s: float = 1.0,
    ):
        self._api = InProcessApi(app)
        self._balancer = balancer
        self._metrics = metrics
        self.plan = plan
        self._rng = rng
        self._checkable = checkable  # whether a verifier holds this weights file (sha256)
        self._interval_s = interval_s

    def routed(self) -> None:
        """A client's request was routed: a share of one canary more is due."""
        self.plan.routed()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s * self._rng.uniform(0.5, 1.5))
            while self.plan.due():
                target = self._target()
                if target is None:
                    break  # every worker has greedy checks enough (or none can be checked)
                self.plan.sent += 1
                await self.send(*target)

    def _target(self) -> tuple[str, str] | None:
        """(worker id, model) for the next canary: among workers with a checkable offer, the least covered."""
        offers: dict[str, str] = {}
        for state in self._balancer.fleet.workers():
            if self._balancer.reputations.convicted(state.worker.id) or not state.health.reachable:
                continue
            checkable = [
                o for o in state.offers if o.sha256 and o.capabilities.generation and self._checkable(o.sha256)
            ]
            if checkable:
                offers[state.worker.id] = self._rng.choice(checkable).model
        coverage = [(w, r.recent_greedy if (r := self._balancer.reputations.get(w)) else 0) for w in offers]
        worker = self.plan.pick(coverage)
        return None if worker is None else (worker, offers[worker])

    async def send(self, worker_id: str, model: str) -> int:
        """One canary to ``worker_id``; the status it got (the answer itself goes to the auditor)."""
        body = json.dumps(canary_body(self._rng, model)).encode()
        request = wire.Request(0, "POST", CHAT_PATH, (), body)
        status = 0

        async def collect(frame: wire.Frame) -> None:
            nonlocal status
            if isinstance(frame, (wire.Head, wire.Answer)):
                status = frame.status

        headers = CIMultiDict({"Content-Type": "application/json"})
        try:
            await self._api.serve(request, headers, Window(), collect, marks={CANARY: worker_id})
        except Exception:  # a canary must never take the gateway down with it
            log.exception("canary to %s failed", worker_id)
        outcome = "sent" if status == 200 else "failed"
        self._metrics.canaries.labels(outcome).inc()
        if outcome == "failed":
            log.info("canary to %s got %s", worker_id, status or "no answer")
        return status
