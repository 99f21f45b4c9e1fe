"""The embedded ledger: one SQLite file in WAL mode, written by one task, a batch per transaction.

``synchronous=NORMAL`` in WAL mode keeps every committed transaction across a
killed process (the OS has the pages); only a power cut may lose the last ones.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Sequence
from itertools import chain

from gateway.ledger.entry import Dimension, LedgerEntry, Receivable, UsageRow
from gateway.ledger.store import (
    COLUMNS,
    HOURLY_SUMS,
    OUTCOMES_QUERY,
    RAW_COLUMNS,
    RAW_TABLE,
    RECEIPT_COLUMNS,
    Outcome,
    add_hourly_row,
    outcome_of,
    raw_values,
    receivable,
    schema,
    usage_row,
)
from routing.sqlite_file import OneConnection, open_private

# One gateway writes a SQLite ledger, so a worker's receipts are found by worker alone (the gateway's key,
# tens of characters, in the index cost a third of a row's insert). Ledgers made before drop the old index.
_RECEIPTS = (
    "drop index if exists usage_raw_receipts;\n"
    "create index if not exists usage_raw_worker_seq on usage_raw (worker_id, seq)"
)
# Each row inserted adds itself to the rollup, inside the insert's own step, and a row skipped as in already
# (a batch written again after a lost commit) fires nothing: a batch is one statement, its own transaction
# (the connection commits each statement), with no lookup or roll-back path beside it.
SCHEMA = (
    "pragma journal_mode = wal;\npragma synchronous = normal;\n"
    + schema({"int": "integer", "real": "real", "text": "text"}, "integer primary key autoincrement", _RECEIPTS)
    + f"create trigger if not exists usage_raw_rollup after insert on usage_raw begin {add_hourly_row('new')}; end;\n"
)

_RAW_ROW = f"({', '.join('?' * len(RAW_TABLE))})"


@functools.cache
def _insert_raw(rows: int) -> str:
    """One statement for ``rows`` rows. Not ``executemany``: that steps once per row, and every step gives
    the GIL up and takes it back from the event loop's thread; one statement inserts all its rows in C."""
    values = ", ".join([_RAW_ROW] * rows)
    return f"insert into usage_raw ({RAW_COLUMNS}) values {values} on conflict (entry_id) do nothing"


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
        db = await asyncio.to_thread(open_private, path, SCHEMA)
        db.isolation_level = None  # each statement commits itself (see SCHEMA); a batch's are all one insert
        return cls(db)

    async def write(self, entries: Sequence[LedgerEntry], gateway: str) -> int:
        # The values are laid out here, on the loop (in C: an entry is its row): the thread below then needs
        # the GIL only to bind them (Python work there waits, at every turn, for the busy loop to hand it over).
        step = self._rows_per_statement
        inserts = [
            (_insert_raw(len(chunk)), list(chain.from_iterable(raw_values(e, gateway) for e in chunk)))
            for chunk in (entries[i : i + step] for i in range(0, len(entries), step))
        ]

        def run() -> int:
            # Several statements only past the bind limit; each is whole or not at all, and a retry adds
            # only the rows not in yet, so a batch never counts twice even if one of them is lost.
            return sum(self._db.execute(statement, values).rowcount for statement, values in inserts)

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
            self._db.execute("delete from usage_raw where at < ?", (raw_before,))
            self._db.execute("delete from usage_hourly where hour < ?", (hourly_before,))

        await self._connection.call(run)

    async def close(self) -> None:
        await self._connection.close()
