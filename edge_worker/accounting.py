"""One request's accounting, the same for every runtime: metrics and one log line.

Time to first token counts from admission (a queued request waits for its
slot first); decode speed is ``(completion_tokens - 1) / (finish - first
token)``, the one formula behind the gauge and the heartbeats' tokens/s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge_worker.metrics import WorkerMetrics
from routing.wire import CLIENT_CLOSED

log = logging.getLogger("edge_worker.requests")


class RequestAccount:
    def __init__(
        self,
        metrics: WorkerMetrics,
        model: str,
        endpoint: str,
        request_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._metrics = metrics
        self._model = model
        self._endpoint = endpoint
        self._request_id = request_id
        self._clock = clock
        self._arrived = self._started = self._last = clock()
        self._first: float | None = None
        self._counted = 0  # completion tokens already in the counter
        self._prompt_tokens = 0

    def admitted(self) -> None:
        """The generation got its slot: time to first token counts from here."""
        self._started = self._last = self._clock()

    def generated(self, tokens: int) -> None:
        """Output went out (``tokens`` of it, where the runtime knows; 0 where it counts at the end)."""
        now = self._clock()
        if self._first is None:
            self._first = now
            self._metrics.ttft.labels(self._model).observe(now - self._started)
        elif tokens:
            self._metrics.inter_token.labels(self._model).observe((now - self._last) / tokens)
        self._last = now
        self._count(tokens)

    def finished(self, prompt_tokens: int, completion_tokens: int) -> None:
        now = self._clock()
        self._count(max(0, completion_tokens - self._counted))
        self._prompt_tokens = prompt_tokens
        self._metrics.prompt_tokens.labels(self._model).inc(prompt_tokens)
        if self._first is not None and completion_tokens > 1 and now > self._first:
            speed = (completion_tokens - 1) / (now - self._first)
            self._metrics.tokens_per_second.labels(self._model).set(speed)
            self._metrics.last_tokens_per_second[self._model] = speed

    def close(self, status: int) -> None:
        """The request is over: count it, and log its one line (the request id is the gateway's, to join them)."""
        m = self._metrics
        m.requests.labels(self._model, self._endpoint, str(status)).inc()
        if status == CLIENT_CLOSED:
            m.cancelled.labels(self._model).inc()
        ttft = None if self._first is None else round((self._first - self._started) * 1000, 1)
        duration_ms = round((self._clock() - self._arrived) * 1000, 1)
        fields = {
            "request_id": self._request_id,
            "endpoint": self._endpoint,
            "model": self._model,
            "status": status,
            "ttft_ms": ttft,
            "prompt_tokens": self._prompt_tokens,
            "completion_tokens": self._counted,
            "duration_ms": duration_ms,
        }
        log.info(
            "%s %s model=%s ttft=%sms tokens=%d+%d %.1fms request_id=%s",
            status,
            self._endpoint,
            self._model,
            "-" if ttft is None else ttft,
            self._prompt_tokens,
            self._counted,
            duration_ms,
            self._request_id,
            extra={"fields": fields},
        )

    def _count(self, tokens: int) -> None:
        if tokens:
            self._counted += tokens
            self._metrics.generation_tokens.labels(self._model).inc(tokens)
