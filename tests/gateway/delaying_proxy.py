"""A delaying reverse proxy: makes a real worker look far away (a long RTT).

Every request (probes too) waits ``delay_s`` before it is passed on; the
answer is streamed back as it comes.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "host"}


async def start_delaying_proxy(upstream: str, delay_s: float, session: aiohttp.ClientSession) -> TestServer:
    async def relay(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay_s)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with session.request(request.method, upstream + request.path_qs, data=body, headers=headers) as resp:
            out = web.StreamResponse(
                status=resp.status,
                headers={k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP},
            )
            await out.prepare(request)
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server
