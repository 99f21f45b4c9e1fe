"""Our SQLite files (gateway state and ledger, worker receipts): private to their user, written off the loop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def open_private(path: str, schema: str) -> sqlite3.Connection:
    """Open (made 0600 in a 0700 directory if new) and apply ``schema``; "" or ":memory:" keeps nothing."""
    in_memory = path in ("", ":memory:")
    if not in_memory:
        file = Path(path).expanduser()
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(file, os.O_CREAT | os.O_RDWR, 0o600))
    db = sqlite3.connect(":memory:" if in_memory else str(file), check_same_thread=False, timeout=10)
    db.executescript(schema)
    return db


class OneConnection:
    """One SQLite connection used from threads one call at a time, off the event loop.

    A call runs to its end even when the task awaiting it is cancelled (a
    thread cannot be stopped), and the next call, ``close`` included, waits
    for it: closing a connection under a running statement crashes the process.
    """

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self._lock = asyncio.Lock()
        # Its own thread, kept warm: a call is one hand-over to it and one back (no task, no pool to pick from).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    async def call(self, work: Callable[[], T]) -> T:
        async with self._lock:
            running = asyncio.get_running_loop().run_in_executor(self._thread, work)
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                await asyncio.wait([running])  # hold the connection until the thread lets go of it
                raise

    async def write(self, statement: str, values: tuple[object, ...]) -> None:
        """One statement in its own transaction."""

        def run() -> None:
            with self.db:
                self.db.execute(statement, values)

        await self.call(run)

    async def close(self) -> None:
        await self.call(self.db.close)
        self._thread.shutdown(wait=False)
