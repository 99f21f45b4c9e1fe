"""Running the gateway app on a socket until asked to stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.front_door import DoorLimits, FrontDoor, descriptor_budget
from routing.process import collect_garbage_seldom, run_until_stopped

log = logging.getLogger("gateway")

# Given the running app, waits until it is ready for users and says how to use it.
Announce = Callable[[web.Application], Awaitable[str]]


async def serve(
    config: GatewayConfig,
    *,
    until: Awaitable[object] | None = None,
    ready: Announce | None = None,
    own_process: bool = False,
) -> None:
    """``own_process``: the process is this gateway's alone (its garbage collection is set for it)."""
    app = create_app(config)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    if own_process:
        collect_garbage_seldom()
    listener: asyncio.Server | None = None
    assert runner.server is not None  # made by setup()
    try:
        door = FrontDoor(runner.server, door_limits(config), access_log=None)
        listener = await asyncio.get_running_loop().create_server(
            door.protocol, config.host, config.port, backlog=1024, reuse_address=True
        )
        log.info(
            "gateway listening on http://%s:%d (at most %d client connections)",
            config.host,
            config.port,
            door.limits.max_connections,
        )
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(run_until_stopped())}
        if until is not None:
            waiters.add(asyncio.ensure_future(until))
        announcing = asyncio.ensure_future(_announce(app, ready)) if ready is not None else None
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in (*waiters, *([announcing] if announcing else [])):
            w.cancel()
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()


def door_limits(config: GatewayConfig) -> DoorLimits:
    return DoorLimits(
        header_timeout_s=config.header_timeout_s,
        keepalive_timeout_s=config.keepalive_timeout_s,
        max_connections=config.max_connections or descriptor_budget(),
        max_connections_per_client=config.max_connections_per_client,
    )


async def _announce(app: web.Application, ready: Announce) -> None:
    print(await ready(app), flush=True)
