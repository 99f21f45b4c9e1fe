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
from gateway.prober import Prober
from gateway.proxy import Proxy, ProxyTimeouts
from gateway.static_workers import StaticWorkers
from routing.balancer import Balancer
from routing.fleet import Fleet
from routing.health import Outliers
from routing.policies import policy_named


def create_app(config: GatewayConfig, *, rng: random.Random | None = None) -> web.Application:
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[openai_errors])

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        # One pooled session for every upstream call, for the app's lifetime.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        fleet = Fleet()
        chance = rng or random.Random()
        balancer = Balancer(
            fleet,
            chance,
            policy_named(config.routing_policy),
            Outliers(config.health_policy()),
            max_attempts=config.max_attempts,
        )
        static_workers = StaticWorkers(config.workers, fleet, session, timeout_s=config.connect_timeout_s)
        timeouts = ProxyTimeouts(
            connect_s=config.connect_timeout_s,
            first_byte_s=config.first_byte_timeout_s,
            request_s=config.request_timeout_s,
            deadline_s=config.deadline_s,
        )
        app[api.STATE] = api.GatewayState(
            balancer=balancer,
            proxy=Proxy(session, timeouts, balancer),
            static_workers=static_workers,
            started_at=int(time.time()),
        )
        prober = Prober(
            balancer, session, interval_s=config.probe_interval_s, timeout_s=config.connect_timeout_s, rng=chance
        )
        await static_workers.refresh()  # know the fleet before the first request
        tasks = [
            asyncio.create_task(static_workers.run(config.refresh_interval_s)),
            asyncio.create_task(prober.run()),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await session.close()

    app.cleanup_ctx.append(state_ctx)
    api.add_routes(app)
    return app
