"""Builds the gateway's aiohttp app from its config: ``create_app(config)``."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway import api
from gateway.config import GatewayConfig
from gateway.errors import openai_errors
from gateway.proxy import Proxy, ProxyTimeouts
from gateway.static_workers import StaticWorkers
from routing.fleet import Fleet


def create_app(config: GatewayConfig, *, rng: random.Random | None = None) -> web.Application:
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[openai_errors])

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        # One pooled session for every upstream call, for the app's lifetime.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        fleet = Fleet()
        static_workers = StaticWorkers(config.workers, fleet, session, timeout_s=config.connect_timeout_s)
        app[api.STATE] = api.GatewayState(
            fleet=fleet,
            proxy=Proxy(
                session,
                ProxyTimeouts(
                    connect_s=config.connect_timeout_s,
                    first_byte_s=config.first_byte_timeout_s,
                    request_s=config.request_timeout_s,
                ),
            ),
            static_workers=static_workers,
            rng=rng or random.Random(),
            max_attempts=config.max_attempts,
            started_at=int(time.time()),
        )
        await static_workers.refresh()  # know the fleet before the first request
        refresher = asyncio.create_task(static_workers.run(config.refresh_interval_s))
        yield
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await session.close()

    app.cleanup_ctx.append(state_ctx)
    api.add_routes(app)
    return app
