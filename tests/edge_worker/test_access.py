"""The worker's gateway-only middleware, on a real aiohttp server (no model needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge_worker.access import gateway_only
from edge_worker.errors import openai_errors
from routing.access_tokens import TokenChecker, TokenMinter
from routing.identity import Identity

TOKEN = "join-token-for-tests-0123456789"
OWN = "this-workers-own-access-token"
GATEWAY = Identity.generate()
NOW = 1_000_000.0

Start = Callable[[bool], Awaitable[str]]


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[TestServer] = []

    async def run(open_health_and_metrics: bool) -> str:
        tokens = TokenChecker("worker-a", lambda: NOW, [GATEWAY.public_key])
        access = gateway_only(tokens, OWN, open_health_and_metrics=open_health_and_metrics)
        app = web.Application(middlewares=[openai_errors, access])
        for path in ("/health", "/metrics", "/v1/models"):
            app.router.add_get(path, ok)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield run
    for s in servers:
        await s.close()


def tampered(token: str) -> str:
    """The token with one signature character changed (mid-signature: the last one carries padding bits)."""
    middle = len(token) - 20
    swapped = "B" if token[middle] != "B" else "C"
    return token[:middle] + swapped + token[middle + 1 :]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("open_paths", [True, False])
async def test_only_a_credential_made_for_this_worker_opens_the_api(start: Start, open_paths: bool) -> None:
    url = await start(open_paths)
    minter = TokenMinter(GATEWAY, lambda: NOW)
    for_us = bearer(minter.token_for("worker-a"))
    refused = [
        {},
        bearer(TOKEN),  # the join token itself
        bearer(minter.token_for("worker-b")),  # what another worker received from the same gateway
        bearer(TokenMinter(Identity.generate(), lambda: NOW).token_for("worker-a")),  # a gateway it does not trust
        bearer(TokenMinter(GATEWAY, lambda: NOW - 2 * 86400).token_for("worker-a")),  # expired
        bearer(tampered(minter.token_for("worker-a"))),
        bearer(OWN + "x"),
    ]
    async with aiohttp.ClientSession() as session:
        for headers in refused:
            async with session.get(f"{url}/v1/models", headers=headers) as resp:
                assert resp.status == 401, headers
        for headers in (for_us, bearer(OWN)):
            async with session.get(f"{url}/v1/models", headers=headers) as resp:
                assert resp.status == 200
        for path in ("/health", "/metrics"):
            async with session.get(url + path) as resp:
                assert resp.status == (200 if open_paths else 401)
            async with session.get(url + path, headers=for_us) as resp:
                assert resp.status == 200


def test_a_gateway_renews_a_token_at_half_its_life() -> None:
    now = [NOW]
    minter = TokenMinter(GATEWAY, lambda: now[0], lifetime_s=100)
    first = minter.token_for("w")
    now[0] += 49
    assert minter.token_for("w") == first
    now[0] += 2
    renewed = minter.token_for("w")
    assert renewed != first
    checker = TokenChecker("w", lambda: now[0], [GATEWAY.public_key])
    assert checker.accepts(first) and checker.accepts(renewed)
    now[0] += 50  # the first has expired; a cached acceptance does not outlive it
    assert not checker.accepts(first) and checker.accepts(renewed)
