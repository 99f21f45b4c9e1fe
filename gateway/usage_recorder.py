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
    # How the request ended, kept for its entry, which is made when its batch forms: a request's own path
    # only notes these (each Python step on it runs cold and costs several times what it does in a batch).
    _status: int = 0
    _ended_wall: float = 0.0
    _ended: float = 0.0  # loop clock

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
        self._status = status
        self._ended_wall = time.time()
        self._ended = asyncio.get_running_loop().time()
        return self.ledger.writer.add(self)

    def ledger_entry(self) -> LedgerEntry:
        """The entry, made as its batch forms (nothing changes an outcome once its answer has ended)."""
        o = self.outcome
        usage, sent_at, first_byte_at = o.usage, o.sent_at, o.first_byte_at
        return LedgerEntry(
            self.ledger.new_entry_id(),
            self.request_id,
            self._ended_wall,
            self.key_id,
            o.worker,
            self.model,
            o.quantization,
            self._status,
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens,
            0.0 if sent_at is None else self._ended - sent_at,
            None if first_byte_at is None or not o.streamed else first_byte_at - self.started,
        )
