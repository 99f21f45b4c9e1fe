"""The worker's gateway-only middleware, on a real aiohttp server (no model needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge_worker.access import gateway_only
from edge_worker.errors import openai_errors
from routing.signing import worker_access_token

TOKEN = "join-token-for-tests-0123456789"


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def start() -> AsyncIterator[object]:
    servers: list[TestServer] = []

    async def run(open_health_and_metrics: bool) -> str:
        app = web.Application(
            middlewares=[openai_errors, gateway_only(TOKEN, open_health_and_metrics=open_health_and_metrics)]
        )
        for path in ("/health", "/metrics", "/v1/models"):
            app.router.add_get(path, ok)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield run
    for s in servers:
        await s.close()


@pytest.mark.parametrize("open_paths", [True, False])
async def test_only_the_gateway_credential_opens_the_api(start, open_paths: bool) -> None:  # type: ignore[no-untyped-def]
    url = await start(open_paths)
    gateway = {"Authorization": f"Bearer {worker_access_token(TOKEN)}"}
    async with aiohttp.ClientSession() as session:
        for headers, expected in (({}, 401), ({"Authorization": f"Bearer {TOKEN}"}, 401), (gateway, 200)):
            async with session.get(f"{url}/v1/models", headers=headers) as resp:
                assert resp.status == expected
        for path in ("/health", "/metrics"):
            async with session.get(url + path) as resp:
                assert resp.status == (200 if open_paths else 401)
            async with session.get(url + path, headers=gateway) as resp:
                assert resp.status == 200
