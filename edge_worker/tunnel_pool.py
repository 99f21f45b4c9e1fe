"""This worker's tunnels: one per gateway that needs one.

Every gateway gets one with ``--tunnel`` (a Consul worker without a gateway
list: every trusted gateway in Consul); otherwise a gateway gets one when it
says it cannot dial the advertised URL (its probes fail while heartbeats
arrive: a home router), unless ``auto_tunnel = false``. A tunnel dials once
the announcer has registered there (``registered``), and again whenever it
drops; all close after the drain.
"""

from __future__ import annotations

import asyncio

import aiohttp

from edge_worker.tunnel import TunnelClient
from routing.in_process import InProcessApi
from routing.signing import Signer
from routing.supervise import start_supervised, stop_all


class TunnelPool:
    def __init__(self, worker_id: str, signer: Signer, api: InProcessApi):
        self._worker_id = worker_id
        self._signer = signer
        self._api = api
        self.clients: dict[str, TunnelClient] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def open(self, gateway: str, *, registered: bool = False) -> None:
        """Dial ``gateway`` (once registered there, or at once: ``registered``, a gateway that knows this worker
        from Consul), from now on; a no-op if its tunnel exists."""
        gateway = gateway.rstrip("/")
        if gateway in self.clients:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        client = TunnelClient(
            gateway, self._worker_id, self._signer, self._session, self._api, known_elsewhere=registered
        )
        if registered:
            client.registered.set()
        self.clients[gateway] = client
        self._tasks.append(start_supervised(f"tunnel to {gateway}", client.run))

    def registered(self, gateway: str) -> None:
        """The announcer registered there: its tunnel (if any) may dial."""
        client = self.clients.get(gateway.rstrip("/"))
        if client is not None:
            client.registered.set()

    async def close(self) -> None:
        await stop_all(self._tasks)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
