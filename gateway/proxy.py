"""Forwarding one request along its attempt plan, relaying the answer.

Before the first byte reaches the client, a failed attempt (connect error,
5xx, no first byte in time) moves on to the next worker; after it, an
upstream failure ends the stream with an SSE error event and ``[DONE]``, so
the client never hangs on a silently truncated stream. Bytes are relayed as
they arrive, never re-encoded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from gateway.metrics import GatewayMetrics
from routing.balancer import Balancer
from routing.errors import AllWorkersFailed, Busy, InferCDNError, UpstreamTimeout
from routing.fleet import Candidate, authorization
from routing.health import Failure
from routing.policies import Dispatch
from routing.usage import Usage
from routing.wire import REQUEST_ID

log = logging.getLogger(__name__)

SSE_DONE = b"data: [DONE]\n\n"
_RELAYED_HEADERS = ("Content-Type", "Cache-Control", "Retry-After")


@dataclass(frozen=True, slots=True)
class ProxyTimeouts:
    connect_s: float
    first_byte_s: float  # streams: until the first chunk
    request_s: float  # non-streaming: the whole answer; streams: the longest gap
    deadline_s: float  # all attempts together, until the client gets a first byte


@dataclass(slots=True)
class Outcome:
    """What happened to one request on its way through the proxy (loop-clock times)."""

    worker: str = ""
    attempts: int = 0
    status: int = 0
    sent_at: float | None = None  # the first attempt left for a worker
    first_byte_at: float | None = None
    usage: Usage = field(default_factory=Usage)


class _RetryableFailure(Exception):
    def __init__(self, error: InferCDNError, kind: Failure | None):
        self.error = error
        self.kind = kind  # None: the worker is fine, just full (503)


class Proxy:
    def __init__(
        self, session: aiohttp.ClientSession, timeouts: ProxyTimeouts, balancer: Balancer, metrics: GatewayMetrics
    ):
        self._session = session
        self._timeouts = timeouts
        self._balancer = balancer
        self._metrics = metrics
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect_s, sock_read=timeouts.request_s
        )

    async def forward(
        self,
        request: web.Request,
        plan: list[Candidate],
        body_for: Callable[[Candidate], bytes],
        *,
        stream: bool,
        request_id: str,
        outcome: Outcome,
    ) -> web.StreamResponse:
        clock = asyncio.get_running_loop().time
        deadline = clock() + self._timeouts.deadline_s
        last: InferCDNError | None = None
        for candidate in plan:
            remaining = deadline - clock()
            if remaining <= 0:
                last = UpstreamTimeout(f"No worker answered within {self._timeouts.deadline_s:g} s.")
                break
            outcome.attempts += 1
            outcome.worker = candidate.state.worker.id
            now = clock()
            if outcome.sent_at is None:
                outcome.sent_at = now
            dispatch = self._balancer.dispatch(candidate, now)
            self._metrics.decisions.labels(outcome.worker).inc()
            try:
                attempt = _Attempt(request, dispatch, body_for(candidate), stream, request_id, outcome, remaining)
                return await self._attempt(attempt)
            except _RetryableFailure as failure:
                last = failure.error
                self._metrics.failovers.labels(failure.kind.value if failure.kind else "busy").inc()
                if failure.kind is None:
                    retry_after = failure.error.retry_after_s if isinstance(failure.error, Busy) else 1
                    self._balancer.busy(dispatch, retry_after, clock())
                else:
                    self._balancer.failed(dispatch, failure.kind, clock())
                log.info(
                    "attempt %d on %s failed (%s); %s",
                    outcome.attempts,
                    outcome.worker,
                    failure.error.message,
                    "trying the next worker" if outcome.attempts < len(plan) else "no workers left",
                )
            finally:
                self._balancer.finished(dispatch)
        assert last is not None  # the plan is never empty
        raise last

    async def _attempt(self, a: _Attempt) -> web.StreamResponse:
        t = self._timeouts
        worker = a.dispatch.candidate.state.worker
        url = worker.url + a.request.path
        headers = {"Content-Type": "application/json", REQUEST_ID: a.request_id, **authorization(worker)}
        clock = asyncio.get_running_loop().time
        upstream: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(min(t.first_byte_s if a.stream else t.request_s, a.budget_s)):
                upstream = await self._session.post(url, data=a.body, headers=headers, timeout=self._client_timeout)
                first_chunk = b""
                if upstream.status < 400 and upstream.content_type == "text/event-stream":
                    # Some servers send headers at once: time to first token is the first chunk.
                    first_chunk = await upstream.content.readany()
        except BaseException as exc:
            if upstream is not None:
                upstream.close()  # also when the client went away: the worker stops generating
            if isinstance(exc, TimeoutError):
                error: InferCDNError = UpstreamTimeout(f"worker {worker.id} sent nothing in time")
                raise _RetryableFailure(error, Failure.TIMEOUT) from None
            if isinstance(exc, aiohttp.ClientError):
                kind = Failure.CONNECT if isinstance(exc, aiohttp.ClientConnectorError) else Failure.ERROR
                error = AllWorkersFailed(f"could not reach a worker: {type(exc).__name__}")
                raise _RetryableFailure(error, kind) from None
            raise
        async with upstream:
            if upstream.status >= 500:
                raise await _upstream_failure(upstream)
            a.outcome.status = upstream.status
            reply_headers = {k: upstream.headers[k] for k in _RELAYED_HEADERS if k in upstream.headers}
            reply_headers.update(_trace_headers(a.request_id, a.outcome))
            if upstream.content_type == "text/event-stream":
                a.outcome.first_byte_at = clock()
                self._balancer.first_byte(a.dispatch, a.outcome.first_byte_at)
                relay = _Relay(first_chunk, a.outcome.usage, self._on_broken(a))
                return await relay.run(a.request, upstream, reply_headers)
            try:
                payload = await upstream.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = AllWorkersFailed(f"the worker broke off: {type(exc).__name__}")
                raise _RetryableFailure(error, Failure.ERROR) from None
            a.outcome.first_byte_at = clock()
            self._balancer.first_byte(a.dispatch, a.outcome.first_byte_at)
            if upstream.status == 200:
                a.outcome.usage.from_body(payload)
            return web.Response(body=payload, status=upstream.status, headers=reply_headers)

    def _on_broken(self, a: _Attempt) -> Callable[[], None]:
        def broken() -> None:
            self._balancer.failed(a.dispatch, Failure.ERROR, asyncio.get_running_loop().time())

        return broken


@dataclass(frozen=True, slots=True)
class _Attempt:
    request: web.Request
    dispatch: Dispatch
    body: bytes
    stream: bool
    request_id: str
    outcome: Outcome
    budget_s: float  # what is left of the deadline


def _trace_headers(request_id: str, outcome: Outcome) -> dict[str, str]:
    return {REQUEST_ID: request_id, "x-infercdn-worker": outcome.worker, "x-infercdn-attempts": str(outcome.attempts)}


async def _upstream_failure(upstream: aiohttp.ClientResponse) -> _RetryableFailure:
    retry_after = upstream.headers.get("Retry-After", "")
    if upstream.status == 503:
        seconds = int(retry_after) if retry_after.isdigit() else 1
        busy = Busy("Every worker for this model is at capacity; retry later.", retry_after_s=seconds)
        return _RetryableFailure(busy, None)
    return _RetryableFailure(AllWorkersFailed(f"the worker answered {upstream.status}"), Failure.ERROR)


@dataclass(frozen=True, slots=True)
class _Relay:
    first_chunk: bytes
    usage: Usage
    on_broken: Callable[[], None]

    async def run(
        self, request: web.Request, upstream: aiohttp.ClientResponse, headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        try:
            if self.first_chunk:
                self.usage.from_stream_chunk(self.first_chunk)
                await response.write(self.first_chunk)
            async for chunk in upstream.content.iter_any():
                self.usage.from_stream_chunk(chunk)
                await response.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The client has bytes already: close the stream explicitly, with an error event.
            self.on_broken()
            error = AllWorkersFailed(f"the worker broke off mid-stream ({type(exc).__name__})")
            await response.write(b"data: " + _json(error.body()) + b"\n\n" + SSE_DONE)
        await response.write_eof()
        return response


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
