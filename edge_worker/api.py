"""The worker's OpenAI-compatible routes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from edge_worker.metrics import WorkerMetrics
from edge_worker.model_set import ModelSet
from edge_worker.openai_format import DONE, ResponseShaper, sse
from edge_worker.runtimes.base import Finished, ModelRuntime, TextDelta
from routing.errors import InferCDNError
from routing.openai_requests import (
    GenerationRequest,
    decode_json_object,
    parse_chat_request,
    parse_completion_request,
)
from routing.wire import CLIENT_CLOSED, REQUEST_ID, offer_to_json

log = logging.getLogger("edge_worker.requests")

MODELS = web.AppKey("models", ModelSet)
METRICS = web.AppKey("metrics", WorkerMetrics)
STARTED_AT = web.AppKey("started_at", int)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, parse_chat_request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, parse_completion_request, "completions")


async def list_models(request: web.Request) -> web.Response:
    created = request.app[STARTED_AT]
    data = [offer_to_json(r.offer, created) for r in request.app[MODELS].runtimes]
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    runtimes = request.app[MODELS].runtimes
    return web.json_response(
        {
            "status": "ok",
            "models": [r.offer.model for r in runtimes],
            "in_flight": sum(r.in_flight for r in runtimes),
            "queued": sum(r.queued for r in runtimes),
        }
    )


async def _generate(
    request: web.Request, parse: Callable[[dict[str, Any]], GenerationRequest], endpoint: str
) -> web.StreamResponse:
    generation_request = parse(decode_json_object(await request.read()))
    runtime = request.app[MODELS].lookup(generation_request.model)
    metrics = request.app[METRICS]
    progress = _Progress(metrics, runtime.offer.model)
    status = "200"
    try:
        if generation_request.stream:
            return await _stream(request, runtime, generation_request, progress)
        return await _complete(runtime, generation_request, progress)
    except InferCDNError as exc:
        status = str(exc.status)
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        status = str(CLIENT_CLOSED)
        metrics.cancelled.labels(runtime.offer.model).inc()
        raise
    finally:
        metrics.requests.labels(runtime.offer.model, endpoint, status).inc()
        progress.log_line(request.headers.get(REQUEST_ID, "-"), endpoint, status)


class _Progress:
    """Token accounting and timing for one generation, into the metrics."""

    def __init__(self, metrics: WorkerMetrics, model: str):
        self._metrics = metrics
        self._model = model
        self._started = self._last = time.monotonic()
        self._arrived = self._started
        self._first: float | None = None
        self._counted = 0
        self._prompt_tokens = 0

    def admitted(self) -> None:
        """The generation got its slot: time to first token counts from here."""
        self._started = self._last = time.monotonic()

    def on_delta(self, delta: TextDelta) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = now
            self._metrics.ttft.labels(self._model).observe(now - self._started)
        elif delta.tokens:
            self._metrics.inter_token.labels(self._model).observe((now - self._last) / delta.tokens)
        self._last = now
        self._counted += delta.tokens
        self._metrics.generation_tokens.labels(self._model).inc(delta.tokens)

    def log_line(self, request_id: str, endpoint: str, status: str) -> None:
        """One line per request; the request id is the gateway's, so the two lines can be joined."""
        ttft = None if self._first is None else round((self._first - self._started) * 1000, 1)
        fields = {
            "request_id": request_id,
            "endpoint": endpoint,
            "model": self._model,
            "status": int(status),
            "ttft_ms": ttft,
            "prompt_tokens": self._prompt_tokens,
            "completion_tokens": self._counted,
            "duration_ms": round((time.monotonic() - self._arrived) * 1000, 1),
        }
        log.info(
            "%s %s model=%s ttft=%sms tokens=%d+%d %.1fms request_id=%s",
            status,
            endpoint,
            self._model,
            "-" if ttft is None else ttft,
            self._prompt_tokens,
            self._counted,
            fields["duration_ms"],
            request_id,
            extra={"fields": fields},
        )

    def on_finished(self, finished: Finished) -> None:
        m = self._metrics
        m.generation_tokens.labels(self._model).inc(max(0, finished.completion_tokens - self._counted))
        self._prompt_tokens = finished.prompt_tokens
        self._counted = max(self._counted, finished.completion_tokens)
        m.prompt_tokens.labels(self._model).inc(finished.prompt_tokens)
        if self._first is not None and finished.completion_tokens > 1:
            decode_s = time.monotonic() - self._first
            if decode_s > 0:
                speed = (finished.completion_tokens - 1) / decode_s
                m.tokens_per_second.labels(self._model).set(speed)
                m.last_tokens_per_second[self._model] = speed


async def _complete(runtime: ModelRuntime, request: GenerationRequest, progress: _Progress) -> web.Response:
    generation = await runtime.start(request)
    progress.admitted()
    parts: list[str] = []
    events = generation.events()
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                progress.on_delta(event)
                parts.append(event.text)
            else:
                progress.on_finished(event)
                body = ResponseShaper(request, runtime.offer.model).complete("".join(parts), event)
                return web.json_response(body)
    finally:
        generation.cancel()
        await events.aclose()
    raise InferCDNError("generation ended without finishing")


async def _stream(
    request: web.Request, runtime: ModelRuntime, generation_request: GenerationRequest, progress: _Progress
) -> web.StreamResponse:
    generation = await runtime.start(generation_request)
    progress.admitted()
    shaper = ResponseShaper(generation_request, runtime.offer.model)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    events = generation.events()
    try:
        async for event in events:
            if not response.prepared:
                # Headers go out with the first token, so a failure before it
                # is still a plain HTTP error the gateway can fail over on.
                await response.prepare(request)
                opening = shaper.first_chunk()
                if opening:
                    await response.write(opening)
            if isinstance(event, TextDelta):
                progress.on_delta(event)
                await response.write(shaper.delta_chunk(event.text))
            else:
                progress.on_finished(event)
                await response.write(shaper.final_chunks(event))
    except InferCDNError as exc:
        if not response.prepared:
            raise
        # Mid-stream: the status is already sent; end the stream with an error event.
        await response.write(sse(exc.body()) + DONE)
    finally:
        generation.cancel()
        await events.aclose()
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
