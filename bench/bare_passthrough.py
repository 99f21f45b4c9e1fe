"""The floor for any Python gateway: a bare aiohttp pass-through, no logic.

``python bench/bare_passthrough.py PORT UPSTREAM_URL``
"""

import sys

import aiohttp
import uvloop
from aiohttp import web


async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
    yield
    await app["s"].close()


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    async with request.app["s"].post(
        UPSTREAM + request.path, data=body, headers={"Content-Type": "application/json"}
    ) as up:
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": up.headers["Content-Type"]})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        return resp


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


if __name__ == "__main__":
    UPSTREAM = sys.argv[2]
    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/{tail:.*}", forward)
    app.router.add_get("/health", health)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
