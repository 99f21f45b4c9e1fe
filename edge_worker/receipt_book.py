"""The usage receipts gateways sent this worker, kept in SQLite beside its key.

Each receipt is checked before it is kept: it must carry the signature of the
gateway whose heartbeat answer brought it and name this worker. It is kept as
it came (the sealed text, what anyone can check again) next to its fields,
once per gateway and sequence number. The highest sequence number per gateway
is the cursor the next heartbeat sends, so nothing is fetched twice.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from routing.errors import InvalidRequest
from routing.identity import to_text
from routing.receipt import SealedReceipt, signed_by, unseal
from routing.sqlite_file import OneConnection, open_private

log = logging.getLogger(__name__)

SCHEMA = """
pragma journal_mode = wal;
create table if not exists receipts (
    gateway_key text not null,
    seq integer not null,
    entry_id text not null,
    request_id text not null,
    model text not null,
    quantization text not null,
    status integer not null,
    prompt_tokens integer not null,
    cached_tokens integer not null,
    completion_tokens integer not null,
    at real not null,
    gpu_seconds real not null,
    sealed text not null,
    primary key (gateway_key, seq)
);
"""


def book_path(key_path: Path) -> Path:
    return key_path.with_suffix(".receipts.sqlite3")


@dataclass(frozen=True, slots=True)
class Kept:
    gateway_key: str
    sealed: str


class ReceiptBook:
    def __init__(self, db: sqlite3.Connection, worker_id: str):
        self._db = db
        self._worker_id = worker_id
        self._connection = OneConnection(db)
        self._cursors: dict[str, int] = dict(db.execute("select gateway_key, max(seq) from receipts group by 1"))
        self.refused = 0  # receipts that failed their checks (a gateway's bug, or someone in the middle)

    @classmethod
    async def open(cls, path: Path, worker_id: str) -> ReceiptBook:
        db = await asyncio.to_thread(open_private, str(path), SCHEMA)
        return cls(db, worker_id)

    def cursor(self, gateway_key: str) -> int:
        return self._cursors.get(gateway_key, 0)

    async def accept(self, gateway_key: bytes, texts: tuple[str, ...]) -> int:
        """Check and keep receipts from the gateway with this key; returns how many were new."""
        key_text = to_text(gateway_key)
        good: list[SealedReceipt] = []
        for text in texts:
            try:
                sealed = unseal(text)
            except InvalidRequest as exc:
                self._refuse(key_text, exc.message)
                continue
            if not signed_by(sealed, gateway_key):
                self._refuse(key_text, f"receipt {sealed.receipt.seq}: not signed by that gateway")
            elif sealed.receipt.worker_id != self._worker_id:
                self._refuse(key_text, f"receipt {sealed.receipt.seq}: for another worker")
            else:
                good.append(sealed)
        if not good:
            return 0
        rows = [(key_text, *_fields(s)) for s in good]

        def write() -> int:
            with self._db:
                before = self._db.total_changes
                self._db.executemany(f"insert or ignore into receipts values ({', '.join('?' * 13)})", rows)
                return self._db.total_changes - before

        new = await self._connection.call(write)
        self._cursors[key_text] = max(self.cursor(key_text), *(s.receipt.seq for s in good))
        return new

    def _refuse(self, gateway_key: str, why: str) -> None:
        self.refused += 1
        log.warning("refused a usage receipt from gateway %s: %s", gateway_key[:12], why)

    async def close(self) -> None:
        await self._connection.close()


def _fields(sealed: SealedReceipt) -> tuple[object, ...]:
    r = sealed.receipt
    return (
        r.seq,
        r.entry_id,
        r.request_id,
        r.model,
        r.quantization,
        r.status,
        r.prompt_tokens,
        r.cached_tokens,
        r.completion_tokens,
        r.at,
        r.gpu_seconds,
        sealed.text,
    )


def kept_since(db: sqlite3.Connection, since: float) -> list[Kept]:
    """What the book holds from ``since`` on (Unix s), for ``infercdn worker receipts`` to check again."""
    rows = db.execute("select gateway_key, sealed from receipts where at >= ? order by gateway_key, seq", (since,))
    return [Kept(key, sealed) for key, sealed in rows]
