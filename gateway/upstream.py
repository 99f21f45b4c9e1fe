"""How the gateway reaches a worker: HTTP to its URL, or through the tunnel it dialled in.

The proxy and the prober ask ``Upstreams.send`` and read the answer the same
way whichever path it took (``UpstreamResponse``: what they use of aiohttp's
``ClientResponse``, which ``TunnelResponse`` also provides).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Protocol

import aiohttp
from yarl import URL

from gateway.tunnels import TunnelHub
from routing.fleet import TUNNEL, Worker


class UpstreamBody(Protocol):
    async def readany(self) -> bytes: ...

    def iter_any(self) -> AsyncIterator[bytes]: ...


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def content_type(self) -> str: ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> UpstreamBody: ...

    async def read(self) -> bytes: ...

    def close(self) -> None:
        """Abandon it: the worker stops (a stream's generation is cancelled)."""

    async def __aenter__(self) -> UpstreamResponse: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Done with it: a connection goes back to the pool."""


class Upstreams:
    def __init__(self, session: aiohttp.ClientSession, tunnels: TunnelHub):
        self._session = session
        self.tunnels = tunnels

    async def send(
        self,
        worker: Worker,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        http_timeout: aiohttp.ClientTimeout,  # direct connections; a tunnel is timed by the caller
    ) -> UpstreamResponse:
        """The worker's answer, once its head has arrived (the caller closes it)."""
        if worker.via == TUNNEL:
            return await self.tunnels.request(worker.id, method, path, tuple(headers.items()), body)
        try:
            return await self._session.request(
                method,
                worker.url + path,
                data=body or None,
                headers=headers,
                timeout=http_timeout,
                allow_redirects=False,
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            self.forget_address(worker.url)
            raise

    def forget_address(self, url: str) -> None:
        """Resolve the URL's host again next time: a worker that restarted (a container, a DHCP lease)
        may answer at a new address under the same name, and the session caches names for minutes."""
        host = URL(url)
        connector = self._session.connector
        if host.host and isinstance(connector, aiohttp.TCPConnector):
            connector.clear_dns_cache(host.host, host.port)
