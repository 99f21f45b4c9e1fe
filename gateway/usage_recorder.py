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
        o = self.outcome
        if self._recorded or o.attempts == 0:
            return 0  # recorded already, or never routed (refused before any worker was tried)
        self._recorded = True
        usage = o.usage
        # Only the values, as they are now: a tuple of numbers and strings, which the garbage collector stops
        # tracking (a queued recorder would keep its outcome's objects in collections until written). The
        # writer numbers it and makes the entry when its batch forms: a warm loop, not a cold call a request.
        return self.ledger.writer.add(
            (
                self.request_id,
                time.time(),
                self.key_id,
                o.worker,
                self.model,
                o.quantization,
                status,
                usage.prompt_tokens,
                usage.cached_tokens,
                usage.completion_tokens,
                0.0 if o.sent_at is None else asyncio.get_running_loop().time() - o.sent_at,
                None if o.first_byte_at is None or not o.streamed else o.first_byte_at - self.started,
            )
        )
