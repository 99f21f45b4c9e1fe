"""Where a gateway keeps what must survive its restarts: worker enrollments and its own key.

An SQLite file (stdlib ``sqlite3``; an empty path keeps it in memory, for
tests and throwaway gateways). Everything is read into memory at open; each
change is written through at once, in a thread, so the event loop never
waits on the disk. The file holds the gateway's private key: it is created
0600 in a 0700 directory.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from enum import StrEnum

from routing.identity import Identity
from routing.sqlite_file import OneConnection, open_private


class EnrollmentState(StrEnum):
    APPROVED = "approved"
    PENDING = "pending"  # enrollment = "manual": waits for "infercdn fleet approve"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One worker id bound to one public key."""

    worker_id: str
    public_key: bytes
    state: EnrollmentState
    enrolled_at: float  # unix time
    source: str  # the address it enrolled from


SCHEMA = """
create table if not exists enrollments (
    worker_id text primary key,
    public_key blob not null unique,
    state text not null,
    enrolled_at real not null,
    source text not null
);
create table if not exists gateway_identity (
    id integer primary key check (id = 1),
    private_key blob not null
);
"""


class EnrollmentStore:
    def __init__(self, connection: sqlite3.Connection, identity: Identity, rows: list[Enrollment]):
        self._writes = OneConnection(connection)
        self.identity = identity
        self.rows = {row.worker_id: row for row in rows}
        self._ids_by_key = {row.public_key: row.worker_id for row in rows}

    @classmethod
    async def open(cls, path: str) -> EnrollmentStore:
        return await asyncio.to_thread(cls._open, path)

    @classmethod
    def _open(cls, path: str) -> EnrollmentStore:
        db = open_private(path, SCHEMA)
        found = db.execute("select private_key from gateway_identity").fetchone()
        if found is None:
            identity = Identity.generate()
            with db:
                db.execute("insert into gateway_identity values (1, ?)", (identity.private_bytes(),))
        else:
            identity = Identity.from_private_bytes(found[0])
        rows = [
            Enrollment(worker_id, bytes(key), EnrollmentState(state), enrolled_at, source)
            for worker_id, key, state, enrolled_at, source in db.execute(
                "select worker_id, public_key, state, enrolled_at, source from enrollments"
            )
        ]
        return cls(db, identity, rows)

    def by_key(self, public_key: bytes) -> Enrollment | None:
        worker_id = self._ids_by_key.get(public_key)
        return None if worker_id is None else self.rows.get(worker_id)

    async def put(self, row: Enrollment) -> None:
        previous = self.rows.get(row.worker_id)
        if previous is not None:  # a handover moves the id to a new key: the old one speaks for nothing
            self._ids_by_key.pop(previous.public_key, None)
        self.rows[row.worker_id] = row
        self._ids_by_key[row.public_key] = row.worker_id
        await self._write(
            "insert or replace into enrollments values (?, ?, ?, ?, ?)",
            (row.worker_id, row.public_key, row.state.value, row.enrolled_at, row.source),
        )

    async def delete(self, worker_id: str) -> None:
        row = self.rows.pop(worker_id, None)
        if row is not None:
            self._ids_by_key.pop(row.public_key, None)
        await self._write("delete from enrollments where worker_id = ?", (worker_id,))

    async def close(self) -> None:
        await self._writes.close()

    async def _write(self, statement: str, values: tuple[object, ...]) -> None:
        await self._writes.write(statement, values)
