"""Background loops (probes, watches, heartbeats) that cannot die silently.

A loop that raises is logged with its traceback and started again after a
backoff (doubling, capped, reset once it has run a while), as a supervisor
would; a loop that returns is restarted too, since these loops are meant to
run until cancelled. Cancellation stops it, as with any task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# A loop that ran this long before failing is failing afresh: start again from the shortest backoff.
HEALTHY_RUN_S = 60.0


async def supervised(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    min_backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    clock = asyncio.get_running_loop().time
    backoff = min_backoff_s
    while True:
        started = clock()
        try:
            await run()
            log.error("background task %s returned; starting it again in %.1f s", name, backoff)
        except Exception:
            log.exception("background task %s died; starting it again in %.1f s", name, backoff)
        if clock() - started > HEALTHY_RUN_S:
            backoff = min_backoff_s
        await sleep(backoff)
        backoff = min(backoff * 2, max_backoff_s)


def start_supervised(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    return asyncio.create_task(supervised(name, run), name=name)


async def stop_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel background tasks and wait until each has stopped."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
