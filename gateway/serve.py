"""Running the gateway app on a socket until asked to stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from gateway.app import create_app
from gateway.config import GatewayConfig
from routing.process import run_until_stopped

log = logging.getLogger("gateway")


async def serve(config: GatewayConfig, *, until: Awaitable[object] | None = None, banner: str = "") -> None:
    runner = web.AppRunner(create_app(config), handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port, backlog=1024).start()
        log.info("gateway ready on http://%s:%d", config.host, config.port)
        if banner:
            print(banner, flush=True)
        stop: asyncio.Future[Any] = asyncio.ensure_future(run_until_stopped())
        waiters: set[asyncio.Future[Any]] = {stop}
        if until is not None:
            waiters.add(asyncio.ensure_future(until))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    finally:
        await runner.cleanup()
