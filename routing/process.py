"""Process life: running the event loop, and waiting for SIGINT/SIGTERM to stop cleanly."""

from __future__ import annotations

import asyncio
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
