"""Waiting for SIGINT/SIGTERM inside a running event loop, for clean shutdowns."""

from __future__ import annotations

import asyncio
import signal


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
