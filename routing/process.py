"""Process life: running the event loop, waiting for SIGINT/SIGTERM to stop cleanly, and collecting garbage."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable, Coroutine
from typing import Any


async def run_until_stopped() -> None:
    """Return when the process is asked to stop (Ctrl-C or SIGTERM)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """asyncio.run, on uvloop where it is installed (faster sockets)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, except on Windows
        asyncio.run(main())
    else:
        uvloop.run(main())


# Python collects its young objects every 700 more made than freed. In a busy gateway that was every few
# requests, for little (a request's objects go when their last reference does): 5 % of the event loop's
# time at concurrency 32, measured with the collector's own callbacks.
YOUNG_GENERATION_THRESHOLD = 20_000


def collect_garbage_seldom() -> None:
    """For a server, once it has started: what exists then lives as long as the process (frozen out of every
    collection), and young objects are collected after ``YOUNG_GENERATION_THRESHOLD`` more, not 700."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)
