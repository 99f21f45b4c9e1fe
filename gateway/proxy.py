"""Forwarding one request along its attempt plan, relaying the answer.

Workers are strangers' machines, so nothing a worker sends reaches the client
unchecked. Before the first byte reaches the client, a failed attempt moves
on to the next worker: a connect error, a 5xx, a busy worker (503 or 429), no
first event or whole answer in time, or an answer that is not OpenAI-shaped
(not JSON, cut off, over the size limit, the wrong content type). After it, a
stream is relayed event by event: an invalid event, a stream that ends
without ``[DONE]``, a worker silent for too long or a stream over its length
or duration caps ends with an SSE error event and ``[DONE]``, so the client
never hangs on, or is handed, a silently truncated stream. A worker's 4xx is
the client's error: relayed, never held against the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from gateway.answer_trail import AnswerTrail
from gateway.answers import JSON_TYPES, AnswerShape, BadAnswer, check_json_answer, completion_answer, read_bounded
from gateway.metrics import GatewayMetrics
from gateway.tunnels import TunnelBroken
from gateway.upstream import UpstreamResponse, Upstreams
from gateway.upstream_errors import AttemptFailed, failed_status, map_upstream_errors
from routing.audit_record import ASK_HEADER
from routing.balancer import Balancer
from routing.errors import AllWorkersFailed, InferCDNError, UpstreamTimeout
from routing.fleet import Candidate, authorization
from routing.health import Failure
from routing.policies import Dispatch
from routing.sse import CONTENT_TYPE, BrokenStream, SseEvent, SseReader, error_event
from routing.usage import Usage
from routing.wire import REQUEST_ID

log = logging.getLogger(__name__)

_RELAYED_HEADERS = ("Content-Type", "Cache-Control", "Retry-After")

# How a stream that broke after its first byte ends in the ledger: it did not deliver what it began.
BROKEN_STREAM = 502

# Answers larger than this are parsed and checked off the event loop (a 16 MB embeddings answer takes ~50 ms).
_CHECK_ON_THREAD_BYTES = 1 << 20

# Called with the status just before an answer's last bytes go to the client (the ledger's commit).
BeforeEnd = Callable[[int], Awaitable[None]]


async def nothing_before_end(status: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    connect_s: float
    first_byte_s: float  # streams: until the first event
    request_s: float  # non-streaming: the whole answer; streams: the longest wait for an event
    deadline_s: float  # all attempts together, until the client gets a first byte
    max_stream_s: float = 3600.0  # a stream's whole duration
    max_stream_bytes: int = 64 << 20
    max_response_bytes: int = 1 << 20  # a non-streaming answer
    max_embeddings_bytes: int = 64 << 20  # an embeddings answer (up to 2,048 vectors)
    max_event_bytes: int = 1 << 20  # one SSE event


@dataclass(slots=True)
class Outcome:
    """What happened to one request on its way through the proxy (loop-clock times)."""

    worker: str = ""
    attempts: int = 0
    status: int = 0
    sent_at: float | None = None  # the first attempt left for a worker
    first_byte_at: float | None = None
    streamed: bool = False  # the answer was a stream: its first byte is a real time to first token
    quantization: str = ""  # of the offer last tried
    usage: Usage = field(default_factory=Usage)
    trail: AnswerTrail = field(default_factory=AnswerTrail)  # for an audit after delivery


class Proxy:
    def __init__(
        self,
        upstreams: Upstreams,
        limits: ProxyLimits,
        balancer: Balancer,
        metrics: GatewayMetrics,
        *,
        ask_records: bool = False,
    ):
        self._upstreams = upstreams
        # With audits on, every request asks for the worker's audit record, so none is told apart.
        self._asked = {ASK_HEADER: "1"} if ask_records else {}
        self._limits = limits
        self._balancer = balancer
        self._metrics = metrics
        self._client_timeout = aiohttp.ClientTimeout(total=None, connect=limits.connect_s, sock_read=limits.request_s)

    async def forward(
        self,
        request: web.Request,
        plan: list[Candidate],
        body_for: Callable[[Candidate], bytes],
        *,
        stream: bool,
        request_id: str,
        outcome: Outcome,
        before_end: BeforeEnd = nothing_before_end,
        answer: AnswerShape = completion_answer,
    ) -> web.StreamResponse:
        """The client's response along the plan. ``outcome`` is the caller's, not a return value, on
        purpose: it must survive a failure and a cancelled client (the tokens a stream got before the
        client left are still charged to its key and logged)."""
        clock = asyncio.get_running_loop().time
        deadline = clock() + self._limits.deadline_s
        last: InferCDNError | None = None
        for candidate in plan:
            remaining = deadline - clock()
            if remaining <= 0:
                last = UpstreamTimeout(f"No worker answered within {self._limits.deadline_s:g} s.")
                break
            outcome.attempts += 1
            outcome.worker = candidate.state.worker.id
            outcome.quantization = candidate.offer.quantization.label
            now = clock()
            if outcome.sent_at is None:
                outcome.sent_at = now
            self._metrics.count_decision(outcome.worker)
            with self._balancer.attempt(candidate, now) as dispatch:
                try:
                    attempt = _Attempt(
                        request,
                        dispatch,
                        body_for(candidate),
                        stream,
                        request_id,
                        outcome,
                        remaining,
                        before_end,
                        answer,
                    )
                    return await self._attempt(attempt)
                except AttemptFailed as failure:
                    last = failure.error
                    self._record(dispatch, failure, clock())
                    log.info(
                        "attempt %d on %s failed (%s); %s",
                        outcome.attempts,
                        outcome.worker,
                        failure.error.message,
                        "trying the next worker" if outcome.attempts < len(plan) else "no workers left",
                    )
        assert last is not None  # the plan is never empty
        raise last

    def _record(self, dispatch: Dispatch, failure: AttemptFailed, now: float) -> None:
        self._metrics.failovers.labels(failure.label).inc()
        if failure.kind is None:
            retry_after = failure.error.headers().get("Retry-After", "1")
            self._balancer.busy(dispatch, float(retry_after), now)
        else:
            self._balancer.failed(dispatch, failure.kind, now)

    async def _attempt(self, a: _Attempt) -> web.StreamResponse:
        limits = self._limits
        worker = a.dispatch.candidate.state.worker
        headers = {"Content-Type": "application/json", REQUEST_ID: a.request_id, **self._asked, **authorization(worker)}
        clock = asyncio.get_running_loop().time
        reader = SseReader(limits.max_event_bytes)
        upstream: UpstreamResponse | None = None
        first_events: list[SseEvent] = []
        payload, answer = b"", None
        try:
            with map_upstream_errors(worker.id):
                # Until the client could have its first byte: the first event of a stream, or a whole answer.
                async with asyncio.timeout(min(limits.first_byte_s if a.stream else limits.request_s, a.budget_s)):
                    upstream = await self._upstreams.send(
                        worker, "POST", a.request.path, a.body, headers, self._client_timeout
                    )
                    status, content_type = upstream.status, upstream.content_type
                    if status >= 500 or status == 429:
                        raise failed_status(status, upstream.headers.get("Retry-After", ""))
                    if status == 200 and content_type == CONTENT_TYPE:
                        first_events = await _first_events(upstream, reader)
                    elif content_type in JSON_TYPES and (200 <= status < 300 or 400 <= status < 500):
                        shape = a.answer
                        limit = limits.max_embeddings_bytes if shape.vectors else limits.max_response_bytes
                        payload = await read_bounded(upstream, limit)
                        if len(payload) > _CHECK_ON_THREAD_BYTES:
                            answer = await asyncio.to_thread(check_json_answer, payload, status, shape)
                        else:
                            answer = check_json_answer(payload, status, shape)
                        payload = a.outcome.trail.strip(answer, payload)
                    else:
                        raise BadAnswer(f"a {status} answer of type {content_type or 'none'!r}")
        except BaseException:
            if upstream is not None:
                upstream.close()  # also when the client went away: the worker stops generating
            raise
        async with upstream:
            a.outcome.status = status
            a.outcome.first_byte_at = clock()
            reply_headers = {k: upstream.headers[k] for k in _RELAYED_HEADERS if k in upstream.headers}
            reply_headers.update(_trace_headers(a.request_id, a.outcome))
            if status >= 400:
                # The worker refused the request itself: the client's error, relayed and never held against it.
                await a.before_end(status)
                return web.Response(body=payload, status=status, headers=reply_headers)
            a.outcome.streamed = bool(first_events)
            self._balancer.first_byte(a.dispatch, a.outcome.first_byte_at, streamed=a.outcome.streamed)
            if not first_events:
                a.outcome.usage.read(answer)
                await a.before_end(status)
                return web.Response(body=payload, status=status, headers=reply_headers)
            relay = _StreamRelay(reader, a.outcome.usage, a.outcome.trail, self._on_broken(a), limits, a.before_end)
            return await relay.run(a.request, upstream, first_events, reply_headers)

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
    before_end: BeforeEnd
    answer: AnswerShape


def _trace_headers(request_id: str, outcome: Outcome) -> dict[str, str]:
    return {REQUEST_ID: request_id, "x-infercdn-worker": outcome.worker, "x-infercdn-attempts": str(outcome.attempts)}


async def _first_events(upstream: UpstreamResponse, reader: SseReader) -> list[SseEvent]:
    """Read until the stream's first data event (servers that send headers at once have not answered yet)."""
    events: list[SseEvent] = []
    while not any(not e.comment for e in events):
        chunk = await upstream.content.readany()
        if not chunk:
            raise BadAnswer("a stream that ended before its first event")
        events += reader.feed(chunk)
    return events


@dataclass(slots=True)
class _StreamRelay:
    reader: SseReader
    usage: Usage
    trail: AnswerTrail
    on_broken: Callable[[], None]
    limits: ProxyLimits
    before_end: BeforeEnd
    overran: bool = False  # the worker sent more text than max_tokens allows

    async def run(
        self, request: web.Request, upstream: UpstreamResponse, events: list[SseEvent], headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + self.limits.max_stream_s
        sent = 0
        error: InferCDNError | None = None
        waiting_on_worker = False
        gap_s = self.limits.request_s
        # Moving the timer costs a heap operation: per token would be wasteful, so it moves at
        # most this often (a silence is caught within request_s plus this slack).
        slack_s = min(1.0, gap_s / 10)
        moved_at = loop.time()
        try:
            # One timer: the next event within request_s, and the whole stream within max_stream_s.
            async with asyncio.timeout_at(min(ends_at, moved_at + gap_s)) as timer:
                while error is None:
                    out, done, upstream_error = self._take(events)
                    # Not held while a slow client drains what they made: the parsed events and their raw
                    # bytes would double what each slow reader costs.
                    events = []
                    if upstream_error:
                        self.on_broken()  # relayed as the worker sent it, but held against it
                    if out:
                        await response.write(out)
                        sent += len(out)
                    if done is not None:
                        await self.before_end(upstream.status)
                        await response.write(done)
                        break
                    if sent > self.limits.max_stream_bytes:
                        error = AllWorkersFailed(f"the stream passed {self.limits.max_stream_bytes} bytes")
                        break
                    if self.overran:  # the meter: it ignored max_tokens
                        error = AllWorkersFailed("the worker sent more tokens than max_tokens allows")
                        break
                    waiting_on_worker = True
                    events, error = await self._next_events(upstream)
                    waiting_on_worker = error is not None  # what it reports is the worker's doing
                    if events and (now := loop.time()) - moved_at > slack_s:
                        timer.reschedule(min(ends_at, now + gap_s))
                        moved_at = now
        except TimeoutError:
            error = (
                UpstreamTimeout(f"the stream passed its {self.limits.max_stream_s:g} s limit")
                if loop.time() >= ends_at
                else self._silence()
            )
        if error is not None:
            if waiting_on_worker or not isinstance(error, UpstreamTimeout):
                self.on_broken()  # not when the client was too slow to read: the worker did no wrong
            upstream.close()
            log.warning("stream cut: %s", error.message)
            await self.before_end(BROKEN_STREAM)
            await response.write(error_event(error.body()))
        await response.write_eof()
        return response

    async def _next_events(self, upstream: UpstreamResponse) -> tuple[list[SseEvent], InferCDNError | None]:
        """The events the worker's next bytes complete, or what broke the stream (the worker's fault only)."""
        try:
            chunk = await upstream.content.readany()
            if not chunk:
                cut = "in the middle of an event" if self.reader.pending else "without [DONE]"
                return [], AllWorkersFailed(f"the worker ended the stream {cut}")
            return self.reader.feed(chunk), None
        except TimeoutError:
            # aiohttp's own read timeout (request_s since the last read) can fire before the relay's
            # timer, which starts after the first events were read: the same silence, told the same way.
            return [], self._silence()
        except (aiohttp.ClientError, TunnelBroken) as exc:
            return [], AllWorkersFailed(f"the worker broke off mid-stream ({type(exc).__name__})")
        except BrokenStream as exc:
            log.warning("invalid event from a worker: %s", exc)  # the detail is the worker's bytes: logs only
            return [], AllWorkersFailed("the worker sent an invalid event", code="upstream_invalid_response")

    def _silence(self) -> UpstreamTimeout:
        return UpstreamTimeout(f"the worker sent nothing for {self.limits.request_s:g} s")

    def _take(self, events: list[SseEvent]) -> tuple[bytes, bytes | None, bool]:
        """What to relay of these events before ``[DONE]``, ``[DONE]`` itself if it came, and whether an
        event was an error."""
        out: list[bytes] = []
        upstream_error = False
        for event in events:
            if event.done:
                self.trail.from_event(event)
                return b"".join(out), event.raw, upstream_error
            self.usage.from_event(event)
            self.trail.from_event(event)
            if self.trail.overran(self.usage.max_completion):
                self.overran = True  # this event and the rest are not relayed
                break
            if event.data is not None:
                upstream_error = upstream_error or "error" in event.data
                out.append(event.raw)
            # Comments (keep-alives, an InferCDN worker's usage) are not relayed: clients see only data.
        return b"".join(out), None, upstream_error
