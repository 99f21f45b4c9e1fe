"""Our SQLite files (gateway state and ledger, worker receipts): private to their user, written off the loop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path


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


class SerialWrites:
    """One write at a time, each in its own transaction, on a thread."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self._lock = asyncio.Lock()

    async def write(self, statement: str, values: tuple[object, ...]) -> None:
        def run() -> None:
            with self.db:
                self.db.execute(statement, values)

        async with self._lock:
            await asyncio.to_thread(run)

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self.db.close)
