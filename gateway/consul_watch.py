"""Workers from a Consul catalog: a blocking query on ``/v1/health/service/<name>?passing``.

Each answer is the whole set of passing instances; the fleet's Consul-sourced
workers are made to match it (added, updated, removed). Only entries signed
with the join token are accepted. While Consul is unreachable the gateway
keeps routing on the last set it saw, and catches up when Consul answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import consul.aio

from routing.balancer import Balancer
from routing.consul_client import CONSUL_ERRORS
from routing.consul_wire import registration_from_service
from routing.errors import InvalidRequest

log = logging.getLogger(__name__)


class ConsulWatch:
    def __init__(
        self,
        balancer: Balancer,
        client: consul.aio.Consul,
        service: str,
        join_token: str,
        *,
        worker_bearer: str,
        wait_s: float = 30.0,
        answered: Callable[[], None] = lambda: None,
    ):
        self._balancer = balancer
        self._client = client
        self._service = service
        self._join_token = join_token
        self._worker_bearer = worker_bearer
        self._wait_s = wait_s
        self._answered = answered  # told after each answer applied: the fleet is known
        self._refused: set[str] = set()  # ids already warned about

    async def run(self) -> None:
        index: str | None = None
        unreachable = False
        backoff = 0.5
        while True:
            try:
                new_index, entries = await self._client.health.service(
                    self._service, index=index, wait=f"{self._wait_s:g}s", passing=True
                )
            except CONSUL_ERRORS as exc:
                if not unreachable:
                    log.warning("Consul unreachable (%s): routing on the last known fleet", type(exc).__name__)
                    unreachable = True
                index = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if unreachable:
                log.info("Consul is reachable again")
                unreachable, backoff = False, 0.5
            # An index that goes backwards (Consul restarted) means: start over.
            index = None if index is not None and _number(new_index) < _number(index) else new_index
            self.apply(entries or [])
            self._answered()

    def apply(self, entries: list[dict[str, Any]]) -> None:
        fleet = self._balancer.fleet
        seen: set[str] = set()
        for entry in entries:
            try:
                reg = registration_from_service(entry.get("Service") or {}, self._join_token)
            except InvalidRequest as exc:
                service_id = str((entry.get("Service") or {}).get("ID", "?"))
                if service_id not in self._refused:
                    log.warning("ignoring Consul service %s: %s", service_id, exc.message)
                    self._refused.add(service_id)
                continue
            seen.add(reg.worker_id)
            worker = reg.worker(source="consul", bearer=self._worker_bearer)
            if fleet.changes(worker, reg.offers):
                fleet.upsert(worker, reg.offers)
                log.info("worker %s (from Consul) at %s", worker.id, worker.url)
        for state in fleet.workers():
            if state.worker.source == "consul" and state.worker.id not in seen:
                self._balancer.remove(state.worker.id)
                log.info("worker %s is no longer passing in Consul: dropped from the fleet", state.worker.id)


def _number(index: str | None) -> int:
    try:
        return int(index or 0)
    except ValueError:
        return 0
