"""Convictions outlive the gateway: who was convicted, when, and the evidence (SQLite).

Kept beside the enrollments (the same file, its own table); a restart reads
them back before the first request, and only an operator's pardon deletes one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import asdict, dataclass

from routing.sqlite_file import OneConnection, open_private

SCHEMA = """
create table if not exists convictions (
    worker_id text primary key,
    convicted_at real not null,
    evidence text not null
);
"""


@dataclass(frozen=True, slots=True)
class Evidence:
    """One flagged audit, as an operator reads it."""

    at: float  # wall-clock time of the audit
    worker_id: str
    request_id: str
    reason: str
    position: int | None = None  # the completion token with the largest gap
    largest_gaps: tuple[tuple[int, float], ...] = ()
    z: float | None = None

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "largest_gaps": [list(g) for g in self.largest_gaps]}


@dataclass(frozen=True, slots=True)
class Conviction:
    worker_id: str
    convicted_at: float
    evidence: tuple[Evidence, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "worker_id": self.worker_id,
            "convicted_at": self.convicted_at,
            "evidence": [e.to_json() for e in self.evidence],
        }


class ConvictionStore:
    def __init__(self, connection: sqlite3.Connection, rows: list[Conviction]):
        self._writes = OneConnection(connection)
        self.rows = {row.worker_id: row for row in rows}

    @classmethod
    async def open(cls, path: str) -> ConvictionStore:
        return await asyncio.to_thread(cls._open, path)

    @classmethod
    def _open(cls, path: str) -> ConvictionStore:
        db = open_private(path, SCHEMA)
        rows = [
            Conviction(worker_id, at, tuple(_evidence(e) for e in json.loads(evidence)))
            for worker_id, at, evidence in db.execute("select worker_id, convicted_at, evidence from convictions")
        ]
        return cls(db, rows)

    async def put(self, row: Conviction) -> None:
        self.rows[row.worker_id] = row
        evidence = json.dumps([e.to_json() for e in row.evidence])
        statement = "insert or replace into convictions values (?, ?, ?)"
        await self._writes.write(statement, (row.worker_id, row.convicted_at, evidence))

    async def delete(self, worker_id: str) -> None:
        self.rows.pop(worker_id, None)
        await self._writes.write("delete from convictions where worker_id = ?", (worker_id,))

    async def close(self) -> None:
        await self._writes.close()


def _evidence(obj: dict[str, object]) -> Evidence:
    gaps = obj.get("largest_gaps") or []
    return Evidence(
        at=float(obj["at"]),  # type: ignore[arg-type]
        worker_id=str(obj["worker_id"]),
        request_id=str(obj["request_id"]),
        reason=str(obj["reason"]),
        position=obj.get("position"),  # type: ignore[arg-type]
        largest_gaps=tuple((int(p), float(g)) for p, g in gaps),  # type: ignore[attr-defined]
        z=obj.get("z"),  # type: ignore[arg-type]
    )
