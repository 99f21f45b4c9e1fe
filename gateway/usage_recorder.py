"""Each routed request into the ledger, exactly once, before the client has all of its answer.

The proxy calls ``before_end`` just before an answer's last bytes (a stream's
``[DONE]``, a whole answer's body): the entry is committed first, so a client
never holds an answer the ledger lacks, even if the gateway dies right after
(with ``ledger_wait_s = 0`` nothing waits: the entry is written off the
request path, and a killed gateway may lose the last batch).
However else the request ends (a failure, a client that left), the handler's
end reports it with ``record`` and nothing waits. The first call wins; a
request is never recorded twice.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from gateway.ledger.entry import LedgerEntry
from gateway.ledger.service import Ledger
from gateway.metrics import GatewayMetrics
from gateway.proxy import Outcome


@dataclass(slots=True)
class UsageRecorder:
    ledger: Ledger
    metrics: GatewayMetrics
    request_id: str
    outcome: Outcome
    started: float  # loop clock, when the request arrived
    key_id: str = ""
    model: str = "unknown"
    _recorded: bool = False

    async def before_end(self, status: int) -> None:
        """Commit the entry (waiting at most the ledger's ``wait_s``; 0: not at all): the answer's last bytes
        go next."""
        ticket = self._add(status)
        if not ticket or not self.ledger.wait_s:
            return
        try:
            async with asyncio.timeout(self.ledger.wait_s):
                await self.ledger.writer.committed(ticket)
        except TimeoutError:
            self.metrics.ledger_late.inc()  # the client is not held hostage to a slow database

    def record(self, status: int) -> None:
        self._add(status)

    def _add(self, status: int) -> int:
        """The entry's ticket (0: none was queued)."""
        if self._recorded or self.outcome.attempts == 0:
            return 0  # recorded already, or never routed (refused before any worker was tried)
        self._recorded = True
        return self.ledger.writer.add(self._entry(status))

    def _entry(self, status: int) -> LedgerEntry:
        o = self.outcome
        now = asyncio.get_running_loop().time()
        return LedgerEntry(
            entry_id=self.ledger.new_entry_id(),
            request_id=self.request_id,
            at=time.time(),
            key_id=self.key_id,
            worker_id=o.worker,
            model=self.model,
            quantization=o.quantization,
            status=status,
            prompt_tokens=o.usage.prompt_tokens,
            cached_tokens=o.usage.cached_tokens,
            completion_tokens=o.usage.completion_tokens,
            worker_seconds=0.0 if o.sent_at is None else now - o.sent_at,
            ttft_s=None if o.first_byte_at is None or not o.streamed else o.first_byte_at - self.started,
        )
