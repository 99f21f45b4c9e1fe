"""Usage receipts owed to registered workers, read from the ledger and signed as they are handed out.

A worker's heartbeat names the last receipt it stored from this gateway; the
answer carries the next ones (at most ``MAX_RECEIPTS_PER_HEARTBEAT``). The
ledger is the only state: nothing is queued per worker, a gateway restart
loses nothing, and a receipt is the same bytes every time it is sent
(Ed25519 signatures are deterministic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.ledger.entry import Receivable
from gateway.ledger.store import LedgerStore
from routing.receipt import MAX_RECEIPTS_PER_HEARTBEAT, Receipt, seal


@dataclass(frozen=True, slots=True)
class ReceiptDesk:
    store: LedgerStore
    gateway: str  # this gateway's public key, as its ledger rows name it
    sign: Callable[[bytes], bytes]

    async def owed(self, worker_id: str, after_seq: int) -> tuple[str, ...]:
        rows = await self.store.receivables(self.gateway, worker_id, after_seq, MAX_RECEIPTS_PER_HEARTBEAT)
        return tuple(seal(receipt_of(r), self.sign) for r in rows)


def receipt_of(row: Receivable) -> Receipt:
    e = row.entry
    return Receipt(
        seq=row.seq,
        entry_id=e.entry_id,
        request_id=e.request_id,
        worker_id=e.worker_id,
        model=e.model,
        quantization=e.quantization,
        status=e.status,
        prompt_tokens=e.prompt_tokens,
        cached_tokens=e.cached_tokens,
        completion_tokens=e.completion_tokens,
        at=e.at,
        gpu_seconds=e.worker_seconds,
    )
