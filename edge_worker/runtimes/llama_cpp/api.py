"""The llama.cpp runtime's OpenAI generation routes: chat and completions, streamed or not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from edge_worker.accounting import RequestAccount
from edge_worker.metrics import WorkerMetrics
from edge_worker.runtimes.llama_cpp.events import ModelRuntime, TextDelta
from edge_worker.runtimes.llama_cpp.model_set import ModelSet
from edge_worker.runtimes.llama_cpp.openai_format import DONE, ResponseShaper, sse
from routing.errors import InferCDNError
from routing.http_errors import reported_status
from routing.openai_requests import (
    GenerationRequest,
    decode_json_object,
    parse_chat_request,
    parse_completion_request,
)
from routing.wire import REQUEST_ID

MODELS = web.AppKey("models", ModelSet)
METRICS = web.AppKey("metrics", WorkerMetrics)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, parse_chat_request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, parse_completion_request, "completions")


async def _generate(
    request: web.Request, parse: Callable[[dict[str, Any]], GenerationRequest], endpoint: str
) -> web.StreamResponse:
    generation_request = parse(decode_json_object(await request.read()))
    runtime = request.app[MODELS].lookup(generation_request.model)
    account = RequestAccount(request.app[METRICS], runtime.offer.model, endpoint, request.headers.get(REQUEST_ID, "-"))
    with reported_status(account.close) as status:
        if generation_request.stream:
            response = await _stream(request, runtime, generation_request, account)
        else:
            response = await _complete(runtime, generation_request, account)
        status.code = response.status
        return response


async def _complete(runtime: ModelRuntime, request: GenerationRequest, account: RequestAccount) -> web.Response:
    generation = await runtime.start(request)
    account.admitted()
    parts: list[str] = []
    events = generation.events()
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                account.generated(event.tokens)
                parts.append(event.text)
            else:
                account.finished(event.prompt_tokens, event.completion_tokens)
                body = ResponseShaper(request, runtime.offer.model).complete("".join(parts), event)
                return web.json_response(body)
    finally:
        generation.cancel()
        await events.aclose()
    raise InferCDNError("generation ended without finishing")


async def _stream(
    request: web.Request, runtime: ModelRuntime, generation_request: GenerationRequest, account: RequestAccount
) -> web.StreamResponse:
    generation = await runtime.start(generation_request)
    account.admitted()
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
                account.generated(event.tokens)
                await response.write(shaper.delta_chunk(event.text))
            else:
                account.finished(event.prompt_tokens, event.completion_tokens)
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
