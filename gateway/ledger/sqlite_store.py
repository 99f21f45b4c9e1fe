"""The embedded ledger: one SQLite file in WAL mode, written by one task, a batch per transaction.

``synchronous=NORMAL`` in WAL mode keeps every committed transaction across a
killed process (the OS has the pages); only a power cut may lose the last ones.
"""

from __future__ import annotations

import asyncio
import functools
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

_RAW_ROW = f"({', '.join('?' * len(RAW_TABLE))})"


@functools.cache
def _insert_raw(rows: int) -> str:
    """One statement for ``rows`` rows. Not ``executemany``: that steps once per row, and every step gives
    the GIL up and takes it back from the event loop's thread; one statement inserts all its rows in C."""
    values = ", ".join([_RAW_ROW] * rows)
    return f"insert into usage_raw ({RAW_COLUMNS}) values {values} on conflict (entry_id) do nothing"


@functools.cache
def _already_in(ids: int) -> str:
    return f"select entry_id from usage_raw where entry_id in ({', '.join('?' * ids)})"


_ADD_HOURLY = add_hourly(["?"] * len(HOURLY_KEY + HOURLY_SUMS))


class SqliteLedger:
    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self._connection = OneConnection(db)
        # As many rows as one statement may bind (32,766 variables since SQLite 3.32; 999 before).
        self._rows_per_statement = max(
            1, min(1024, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(RAW_TABLE))
        )

    @classmethod
    async def open(cls, path: str) -> SqliteLedger:
        return cls(await asyncio.to_thread(open_private, path, SCHEMA))

    async def write(self, entries: Sequence[LedgerEntry], gateway: str) -> int:
        # Everything Python is done here, on the loop: the thread below needs the GIL only between statements
        # (Python work there waits, at every turn, for the busy loop to hand the GIL over).
        step = self._rows_per_statement
        row_chunks = [entries[i : i + step] for i in range(0, len(entries), step)]
        inserts = [(_insert_raw(len(c)), [v for e in c for v in raw_values(e, gateway)]) for c in row_chunks]
        sums = rollup(entries)

        def run() -> bool:
            """The batch in one transaction, if none of it is there yet (else nothing, rolled back)."""
            with self._db:
                inserted = sum(self._db.execute(statement, values).rowcount for statement, values in inserts)
                if inserted != len(entries):
                    self._db.rollback()  # part of it is in already: the rollup must add only the rest
                    return False
                self._db.executemany(_ADD_HOURLY, sums)
            return True

        # No lookup first: the insert itself says whether every row was new (a lookup cost a third of a batch).
        if await self._connection.call(run):
            return len(entries)
        # (Rare) written again after a lost commit: find what is in, and write only the rest.
        step = step * len(RAW_TABLE)
        ids = [e.entry_id for e in entries]
        id_chunks = [ids[i : i + step] for i in range(0, len(ids), step)]

        def already_in() -> set[str]:
            return {row[0] for chunk in id_chunks for row in self._db.execute(_already_in(len(chunk)), chunk)}

        there = await self._connection.call(already_in)
        rest = [e for e in entries if e.entry_id not in there]
        return await self.write(rest, gateway) if rest else 0

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
