"""The worker's end of a tunnel, against a gateway stand-in (a real WebSocket server on loopback).

The stand-in sends the frames a gateway would, and some a gateway should not;
the worker's own API is a real aiohttp server behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge_worker.tunnel import TunnelClient
from routing import tunnel_wire as wire
from routing.identity import Identity
from routing.in_process import InProcessApi
from routing.signing import Signer

WORKER = "w"


class GatewayStandIn:
    """Accepts one tunnel and hands its frames to the test, one by one."""

    def __init__(self) -> None:
        self.opened: asyncio.Queue[web.WebSocketResponse] = asyncio.Queue()
        self.done = asyncio.Event()

    async def tunnel(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await self.opened.put(ws)
        await self.done.wait()  # the test reads and writes on it meanwhile
        return ws


async def frame_from(ws: web.WebSocketResponse) -> wire.Frame:
    message = await ws.receive()
    assert message.type is aiohttp.WSMsgType.BINARY, message
    return wire.decode(message.data, wire.FROM_WORKER)


@pytest.fixture
async def servers() -> AsyncIterator[tuple[GatewayStandIn, web.WebSocketResponse, list[str]]]:
    hits: list[str] = []

    async def api(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"object": "list", "data": [], "auth": request.headers.get("Authorization")})

    local = web.Application()
    local.router.add_get("/v1/models", api)
    local.router.add_get("/internal/secret", api)
    local_server = TestServer(local, host="127.0.0.1")
    await local_server.start_server()

    gateway = GatewayStandIn()
    gateway_app = web.Application()
    gateway_app.router.add_get(wire.tunnel_path(WORKER), gateway.tunnel)
    gateway_server = TestServer(gateway_app, host="127.0.0.1")
    await gateway_server.start_server()

    async with aiohttp.ClientSession() as session:
        signer = Signer(Identity.generate(), WORKER, "join-token-for-tests-0123456789")
        gw = str(gateway_server.make_url("")).rstrip("/")
        client = TunnelClient(gw, WORKER, signer, session, InProcessApi(local_server.app))
        client.registered.set()
        task = asyncio.create_task(client.run())
        ws = await asyncio.wait_for(gateway.opened.get(), timeout=30)
        yield gateway, ws, hits
        gateway.done.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await gateway_server.close()
    await local_server.close()


async def test_requests_reach_the_workers_api_with_the_gateways_headers_and_nothing_else(
    servers: tuple[GatewayStandIn, web.WebSocketResponse, list[str]],
) -> None:
    _, ws, hits = servers
    await ws.send_bytes(wire.encode(wire.Ping(41)))
    assert await frame_from(ws) == wire.Pong(41)

    headers = (("Authorization", "Bearer for-this-worker"), ("Host", "evil.example"))
    await ws.send_bytes(wire.encode(wire.Request(1, "GET", "/v1/models", headers, b"")))
    answer = await frame_from(ws)  # short and whole: head, body and end in one frame
    assert isinstance(answer, wire.Answer) and answer.stream == 1 and answer.status == 200
    assert dict(answer.headers)["Content-Type"].startswith("application/json")
    assert b'"auth": "Bearer for-this-worker"' in answer.body

    # Only the worker's API, health and metrics are served: nothing else on its host.
    await ws.send_bytes(wire.encode(wire.Request(2, "GET", "/internal/secret", (), b"")))
    refused = await frame_from(ws)
    assert isinstance(refused, wire.Failed) and refused.stream == 2
    assert hits == ["/v1/models"]

    # A frame that breaks the protocol: the worker hangs up (and will dial again).
    await ws.send_bytes(b"\xc1")
    assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
