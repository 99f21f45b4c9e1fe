"""A Consul worker finds its gateways in Consul: to dial tunnels to them, and to fetch its receipts.

A blocking query on the gateways' service (``routing.gateway_presence``)
yields every passing gateway; one whose entry is signed by a key in
``gateway_keys`` is handed on: a tunnelled worker dials it (a gateway knows
this worker from its own signed Consul entry, so the tunnel may dial at
once), and every Consul worker asks it for its usage receipts.
Entries from keys it does not trust, forged or expired, are skipped with one
warning each. A gateway that leaves Consul keeps its tunnel, which redials
with backoff until it is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import consul.aio

from routing.consul_client import follow
from routing.errors import InvalidRequest
from routing.gateway_presence import SERVICE, FoundGateway, found_gateway

log = logging.getLogger(__name__)


class ConsulGateways:
    def __init__(
        self,
        client: consul.aio.Consul,
        trusted: Collection[bytes],
        found: Callable[[FoundGateway], None],
        *,
        wait_s: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
    ):
        self._client = client
        self._trusted = trusted
        self._found = found  # told of each trusted gateway, at every answer (what it does must be idempotent)
        self._wait_s = wait_s
        self._wall_clock = wall_clock
        self._warned: set[str] = set()

    async def run(self) -> None:
        await follow(self._passing, self._apply, meanwhile="tunnels stay open to the gateways found so far")

    async def _passing(self, index: str | None) -> tuple[str | None, list[dict[str, Any]]]:
        answered, entries = await self._client.health.service(
            SERVICE, index=index, wait=f"{self._wait_s:g}s", passing=True
        )
        return answered, entries or []

    async def _apply(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            service = entry.get("Service") if isinstance(entry, dict) else None
            try:
                gateway = found_gateway(service, self._trusted, self._wall_clock())
            except InvalidRequest as exc:
                name = str(service.get("ID", "?"))[:200] if isinstance(service, dict) else "?"
                if name not in self._warned and len(self._warned) < 4096:
                    log.warning("ignoring gateway %s in Consul: %s", name, exc.message)
                    self._warned.add(name)
                continue
            self._found(gateway)
