"""Tunnelled workers for tests: a gateway that takes registrations, and workers that dial it.

``tunnelled_standin`` is a stand-in model server (``StandIn``, a real aiohttp
server on loopback) behind the worker's real ``TunnelClient``; ``open_raw``
opens a tunnel with nothing behind it, for a test to send whatever frames it
likes (a hostile worker).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from dataclasses import dataclass

import aiohttp
from aiohttp.test_utils import TestServer

from edge_worker.tunnel import TunnelClient
from gateway.app import create_app
from gateway.config import GatewayConfig
from routing import tunnel_wire as wire
from routing.announce import REGISTER_PATH, pack
from routing.fleet import TUNNEL
from routing.in_process import InProcessApi
from routing.signing import Signer
from tests.gateway.standin import Behaviour, StandIn, answer_ok
from tests.gateway.test_registry import TOKEN, key_of, post_signed, registration


async def start_tunnel_gateway(**settings: object) -> tuple[TestServer, str]:
    """A gateway that takes registrations; workers stay until they leave (no heartbeats needed here)."""
    settings = {"state_file": ":memory:", "probe_interval_s": 0.2, "worker_ttl_s": 600.0, **settings}
    config = GatewayConfig(join_token=TOKEN, **settings)  # type: ignore[arg-type]
    app = create_app(config, rng=random.Random(5))
    server = TestServer(app, host="127.0.0.1", handler_cancellation=True)
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")


async def register_tunnelled(session: aiohttp.ClientSession, gw: str, worker_id: str) -> Signer:
    body = pack(dataclasses.replace(registration(worker_id), via=TUNNEL))
    status, _ = await post_signed(session, gw, REGISTER_PATH, body)
    assert status == 200
    return Signer(key_of(worker_id), worker_id, TOKEN)


@dataclass
class TunnelledStandIn:
    standin: StandIn
    client: TunnelClient
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.standin.stop()


async def tunnelled_standin(
    session: aiohttp.ClientSession, gw: str, worker_id: str, behaviour: Behaviour = answer_ok
) -> TunnelledStandIn:
    standin = await StandIn(behaviour=behaviour).start()
    signer = await register_tunnelled(session, gw, worker_id)
    client = TunnelClient(gw, worker_id, signer, session, InProcessApi(standin.app))
    client.registered.set()
    task = asyncio.create_task(client.run())
    await asyncio.wait_for(client.connected.wait(), timeout=30)
    return TunnelledStandIn(standin, client, task)


def signed_open(worker_id: str, *, path_id: str | None = None) -> tuple[str, dict[str, str]]:
    """The path and headers of a tunnel open signed by ``worker_id``'s key (for ``path_id``'s path)."""
    path = wire.tunnel_path(path_id or worker_id)
    return path, Signer(key_of(worker_id), worker_id, TOKEN).headers("GET", path, b"", time.time())


async def open_raw(session: aiohttp.ClientSession, gw: str, worker_id: str) -> aiohttp.ClientWebSocketResponse:
    path, headers = signed_open(worker_id)
    return await session.ws_connect(gw + path, headers=headers, max_msg_size=wire.MAX_GATEWAY_FRAME)
