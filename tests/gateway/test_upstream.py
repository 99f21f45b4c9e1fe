"""How the gateway reaches a worker by name when the name moves (a restarted container's new address)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from bench.servers import free_port
from gateway.tunnels import TunnelHub
from gateway.upstream import Upstreams
from gateway.upstream_errors import AttemptFailed, map_upstream_errors
from routing.fleet import Worker
from routing.health import Failure

NAME = "worker.fleet.test"


class MovableName(AbstractResolver):
    """A DNS server stand-in (none runs here): NAME resolves to whichever loopback address it is set to."""

    def __init__(self, address: str):
        self.address = address
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        assert host == NAME
        self.lookups += 1
        return [
            ResolveResult(
                hostname=host, host=self.address, port=port, family=socket.AF_INET, proto=0, flags=socket.AI_NUMERICHOST
            )
        ]

    async def close(self) -> None:
        pass


@asynccontextmanager
async def worker_at(address: str, port: int, answer: str) -> AsyncIterator[None]:
    app = web.Application()

    async def health(request: web.Request) -> web.Response:
        return web.Response(text=answer)

    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


async def ask(upstreams: Upstreams, worker: Worker) -> str:
    timeout = aiohttp.ClientTimeout(total=5)
    response: Any = await upstreams.send(worker, "GET", "/health", b"", {}, timeout)
    async with response:
        return str((await response.read()).decode())


async def test_a_worker_that_moved_is_found_at_its_new_address_after_one_refused_connect() -> None:
    port = free_port()
    name = MovableName("127.0.0.1")
    connector = aiohttp.TCPConnector(resolver=name, ttl_dns_cache=300)  # as the gateway's: names kept 5 min
    worker = Worker("w", f"http://{NAME}:{port}")
    async with aiohttp.ClientSession(connector=connector) as session:
        upstreams = Upstreams(session, TunnelHub(ping_interval_s=1.0, on_rtt=lambda worker_id, rtt_s: None))
        async with worker_at("127.0.0.1", port, "old"):
            assert await ask(upstreams, worker) == "old"
        name.address = "127.0.0.2"  # restarted elsewhere, same name
        async with worker_at("127.0.0.2", port, "new"):
            with pytest.raises(aiohttp.ClientConnectorError):
                await ask(upstreams, worker)  # the cached address: nobody there now
            assert await ask(upstreams, worker) == "new"
    assert name.lookups == 2


async def test_forgetting_an_address_resolves_the_name_again() -> None:
    port = free_port()
    name = MovableName("127.0.0.1")
    worker = Worker("w", f"http://{NAME}:{port}")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=name, ttl_dns_cache=300)) as session:
        upstreams = Upstreams(session, TunnelHub(ping_interval_s=1.0, on_rtt=lambda worker_id, rtt_s: None))
        async with worker_at("127.0.0.1", port, "old"):
            assert await ask(upstreams, worker) == "old"
        name.address = "127.0.0.2"
        upstreams.forget_address(worker.url)  # as a registration does
        async with worker_at("127.0.0.2", port, "new"):
            assert await ask(upstreams, worker) == "new"


def test_a_connect_timeout_is_a_failure_to_connect_not_a_silent_worker() -> None:
    """Nothing was sent, so the request may go to another worker whatever it was."""
    with pytest.raises(AttemptFailed) as failed, map_upstream_errors("w"):
        raise aiohttp.ConnectionTimeoutError("connect timed out")
    assert failed.value.kind is Failure.CONNECT
