"""A tunnelled Consul worker finds its gateways in Consul, and dials each.

It has no ``--gateway`` list: a blocking query on the gateways' service
(``routing.gateway_presence``) yields every passing gateway; one whose entry
is signed by a key in ``gateway_keys`` gets a tunnel (a gateway knows this
worker from its own signed Consul entry, so the tunnel may dial at once).
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
from routing.gateway_presence import SERVICE, gateway_url

log = logging.getLogger(__name__)


class ConsulGateways:
    def __init__(
        self,
        client: consul.aio.Consul,
        trusted: Collection[bytes],
        dial: Callable[[str], None],
        *,
        wait_s: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
    ):
        self._client = client
        self._trusted = trusted
        self._dial = dial  # opens a tunnel to a gateway (a no-op for one already dialled)
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
                url = gateway_url(service, self._trusted, self._wall_clock())
            except InvalidRequest as exc:
                name = str(service.get("ID", "?"))[:200] if isinstance(service, dict) else "?"
                if name not in self._warned and len(self._warned) < 4096:
                    log.warning("ignoring gateway %s in Consul: %s", name, exc.message)
                    self._warned.add(name)
                continue
            self._dial(url)
