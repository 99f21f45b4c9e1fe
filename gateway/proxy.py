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
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway.errors import REQUEST_ID
from routing.errors import AllWorkersFailed, Busy, InferCDNError, UpstreamTimeout
from routing.fleet import Candidate

log = logging.getLogger(__name__)

SSE_DONE = b"data: [DONE]\n\n"
_RELAYED_HEADERS = ("Content-Type", "Cache-Control", "Retry-After")


@dataclass(frozen=True, slots=True)
class ProxyTimeouts:
    connect_s: float
    first_byte_s: float  # streams: until the response starts
    request_s: float  # non-streaming: the whole answer; streams: the longest gap


@dataclass(slots=True)
class Outcome:
    worker: str = ""
    attempts: int = 0
    status: int = 0


class _RetryableFailure(Exception):
    def __init__(self, error: InferCDNError):
        self.error = error


class Proxy:
    def __init__(self, session: aiohttp.ClientSession, timeouts: ProxyTimeouts):
        self._session = session
        self._timeouts = timeouts

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
        last: InferCDNError | None = None
        for candidate in plan:
            outcome.attempts += 1
            outcome.worker = candidate.state.worker.id
            candidate.state.in_flight += 1
            try:
                return await self._attempt(request, candidate, body_for(candidate), stream, request_id, outcome)
            except _RetryableFailure as failure:
                last = failure.error
                log.info(
                    "attempt %d on %s failed (%s); %s",
                    outcome.attempts,
                    outcome.worker,
                    failure.error.message,
                    "trying the next worker" if outcome.attempts < len(plan) else "no workers left",
                )
            finally:
                candidate.state.in_flight -= 1
        assert last is not None  # the plan is never empty
        raise last

    async def _attempt(
        self,
        request: web.Request,
        candidate: Candidate,
        body: bytes,
        stream: bool,
        request_id: str,
        outcome: Outcome,
    ) -> web.StreamResponse:
        t = self._timeouts
        url = candidate.state.worker.url + request.path
        timeout = aiohttp.ClientTimeout(total=None, connect=t.connect_s, sock_read=t.request_s)
        headers = {"Content-Type": "application/json", REQUEST_ID: request_id}
        try:
            async with asyncio.timeout(t.first_byte_s if stream else t.request_s):
                upstream = await self._session.post(url, data=body, headers=headers, timeout=timeout)
        except TimeoutError:
            raise _RetryableFailure(
                UpstreamTimeout(f"worker {candidate.state.worker.id} sent nothing in time")
            ) from None
        except aiohttp.ClientError as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                candidate.state.healthy = False  # until discovery reaches it again
            raise _RetryableFailure(AllWorkersFailed(f"could not reach a worker: {type(exc).__name__}")) from None
        async with upstream:
            if upstream.status >= 500:
                raise _RetryableFailure(await _upstream_error(upstream))
            outcome.status = upstream.status
            reply_headers = {k: upstream.headers[k] for k in _RELAYED_HEADERS if k in upstream.headers}
            reply_headers.update(_trace_headers(request_id, outcome))
            if upstream.content_type == "text/event-stream":
                return await _relay_stream(request, upstream, reply_headers, t.request_s)
            try:
                payload = await upstream.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _RetryableFailure(AllWorkersFailed(f"the worker broke off: {type(exc).__name__}")) from None
            return web.Response(body=payload, status=upstream.status, headers=reply_headers)


def _trace_headers(request_id: str, outcome: Outcome) -> dict[str, str]:
    return {REQUEST_ID: request_id, "x-infercdn-worker": outcome.worker, "x-infercdn-attempts": str(outcome.attempts)}


async def _upstream_error(upstream: aiohttp.ClientResponse) -> InferCDNError:
    retry_after = upstream.headers.get("Retry-After", "")
    if upstream.status == 503:
        seconds = int(retry_after) if retry_after.isdigit() else 1
        return Busy("Every worker for this model is at capacity; retry later.", retry_after_s=seconds)
    return AllWorkersFailed(f"the worker answered {upstream.status}")


async def _relay_stream(
    request: web.Request, upstream: aiohttp.ClientResponse, headers: dict[str, str], gap_s: float
) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The client has bytes already: close the stream explicitly, with an error event.
        error = AllWorkersFailed(f"the worker broke off mid-stream ({type(exc).__name__})")
        await response.write(b"data: " + _json(error.body()) + b"\n\n" + SSE_DONE)
    await response.write_eof()
    return response


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
