"""The embedded ledger: one SQLite file in WAL mode, written by one task, a batch per transaction.

``synchronous=NORMAL`` in WAL mode keeps every committed transaction across a
killed process (the OS has the pages); only a power cut may lose the last ones.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

from gateway.ledger.entry import Dimension, LedgerEntry, Receivable, UsageRow
from gateway.ledger.store import (
    COLUMNS,
    HOURLY_KEY,
    HOURLY_SUMS,
    OUTCOMES_QUERY,
    RAW_COLUMNS,
    RAW_TABLE,
    RECEIPT_COLUMNS,
    Outcome,
    add_hourly,
    outcome_of,
    raw_values,
    receivable,
    rollup,
    schema,
    usage_row,
)
from routing.sqlite_file import OneConnection, open_private

SCHEMA = "pragma journal_mode = wal;\npragma synchronous = normal;\n" + schema(
    {"int": "integer", "real": "real", "text": "text"}, "integer primary key autoincrement"
)

_INSERT_RAW = (
    f"insert into usage_raw ({RAW_COLUMNS}) values ({', '.join('?' * len(RAW_TABLE))}) "
    "on conflict (entry_id) do nothing"
)
_ADD_HOURLY = add_hourly(["?"] * len(HOURLY_KEY + HOURLY_SUMS))


class SqliteLedger:
    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self._connection = OneConnection(db)

    @classmethod
    async def open(cls, path: str) -> SqliteLedger:
        return cls(await asyncio.to_thread(open_private, path, SCHEMA))

    async def write(self, entries: Sequence[LedgerEntry], gateway: str) -> int:
        def run() -> int:
            ids = [e.entry_id for e in entries]
            with self._db:
                # Entries already in (a batch written again after a lost commit) are left out, in one query.
                query = f"select entry_id from usage_raw where entry_id in ({', '.join('?' * len(ids))})"
                there = {row[0] for row in self._db.execute(query, ids)}
                new = [e for e in entries if e.entry_id not in there]
                self._db.executemany(_INSERT_RAW, [raw_values(e, gateway) for e in new])
                self._db.executemany(_ADD_HOURLY, rollup(new))
            return len(new)

        return await self._connection.call(run)

    async def usage(self, dimension: Dimension, since_hour: int) -> list[UsageRow]:
        column = COLUMNS[dimension]
        sums = ", ".join(f"sum({c})" for c in HOURLY_SUMS)
        query = f"select {column}, {sums} from usage_hourly where hour >= ? group by {column} order by {column}"
        rows = await self._connection.call(lambda: self._db.execute(query, (since_hour,)).fetchall())
        return [usage_row(r, dimension) for r in rows]

    async def receivables(self, gateway: str, worker_id: str, after_seq: int, limit: int) -> list[Receivable]:
        query = (
            f"select {RECEIPT_COLUMNS} from usage_raw where gateway = ? and worker_id = ? and seq > ? "
            "order by seq limit ?"
        )
        values = (gateway, worker_id, after_seq, limit)
        rows = await self._connection.call(lambda: self._db.execute(query, values).fetchall())
        return [receivable(r) for r in rows]

    async def outcomes_since(self, since: float) -> list[Outcome]:
        query = OUTCOMES_QUERY.format("?")
        rows = await self._connection.call(lambda: self._db.execute(query, (since,)).fetchall())
        return [outcome_of(r) for r in rows]

    async def prune(self, raw_before: float, hourly_before: int) -> None:
        def run() -> None:
            with self._db:
                self._db.execute("delete from usage_raw where at < ?", (raw_before,))
                self._db.execute("delete from usage_hourly where hour < ?", (hourly_before,))

        await self._connection.call(run)

    async def close(self) -> None:
        await self._connection.close()
