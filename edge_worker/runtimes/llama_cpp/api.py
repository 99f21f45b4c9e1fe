"""The llama.cpp runtime's OpenAI generation routes: chat and completions, streamed or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiohttp import web

from edge_worker.accounting import RequestAccount
from edge_worker.audit_records import RECORDS
from edge_worker.metrics import WorkerMetrics
from edge_worker.runtimes.llama_cpp.choice_output import ChoiceOutput
from edge_worker.runtimes.llama_cpp.events import Finished, Generation, GenerationEvent, ModelRuntime, TextDelta
from edge_worker.runtimes.llama_cpp.model_set import ModelSet
from edge_worker.runtimes.llama_cpp.openai_format import DONE, ResponseShaper, sse
from routing.audit_record import ASK_HEADER, AUDIT_COMMENT, AUDIT_FIELD, ChoiceIds
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
    request_id = request.headers.get(REQUEST_ID, "-")
    account = RequestAccount(request.app[METRICS], runtime.offer.model, endpoint, request_id)
    with reported_status(account.close) as status:
        generations = await runtime.start(generation_request)
        account.admitted()
        audit = _AuditTrail(request, request_id, runtime.offer.model, generations)
        try:
            if generation_request.stream:
                response = await _stream(request, runtime, generation_request, generations, account, audit)
            else:
                response = await _complete(runtime, generation_request, generations, account, audit)
        finally:
            for generation in generations:
                generation.cancel()
        status.code = response.status
        return response


class _AuditTrail:
    """The audit record a gateway asked for (it asks with every request): what each choice sampled."""

    def __init__(self, request: web.Request, request_id: str, model: str, generations: Sequence[Generation]):
        sealer = request.app.get(RECORDS)
        self._sealer = sealer if request.headers.get(ASK_HEADER) else None
        self._request_id, self._model = request_id, model
        self._prompt_ids = generations[0].prompt_ids if generations else ()
        self._choices: list[ChoiceIds] = [ChoiceIds(())] * len(generations)

    def finished(self, index: int, event: Finished) -> None:
        self._choices[index] = ChoiceIds(event.completion_ids, event.end_token)

    def sealed(self) -> str | None:
        if self._sealer is None:
            return None
        return self._sealer.seal(self._request_id, self._model, self._prompt_ids, self._choices)


async def _complete(
    runtime: ModelRuntime,
    request: GenerationRequest,
    generations: Sequence[Generation],
    account: RequestAccount,
    audit: _AuditTrail,
) -> web.Response:
    outputs = [ChoiceOutput(g.plan, request.tools) for g in generations]
    reasons = [""] * len(generations)
    total = Finished("stop", 0, 0)
    async for index, event in _events_of(generations):
        if isinstance(event, TextDelta):
            account.generated(event.tokens)
            outputs[index].take(event.text, event.logprobs)
        else:
            _, reasons[index] = outputs[index].finish(event.reason)
            total = _add(total, event)
            audit.finished(index, event)
    account.finished(total.prompt_tokens, total.completion_tokens)
    body = ResponseShaper(request, runtime.offer.model).complete(outputs, reasons, total)
    sealed = audit.sealed()
    if sealed is not None:
        body[AUDIT_FIELD] = sealed  # for the gateway: it removes the field before the client sees the body
    return web.json_response(body)


async def _stream(
    request: web.Request,
    runtime: ModelRuntime,
    generation_request: GenerationRequest,
    generations: Sequence[Generation],
    account: RequestAccount,
    audit: _AuditTrail,
) -> web.StreamResponse:
    shaper = ResponseShaper(generation_request, runtime.offer.model)
    outputs = [ChoiceOutput(g.plan, generation_request.tools) for g in generations]
    total = Finished("stop", 0, 0)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    try:
        async for index, event in _events_of(generations):
            if not response.prepared:
                # Headers go out with the first token, so a failure before it
                # is still a plain HTTP error the gateway can fail over on.
                await response.prepare(request)
                opening = shaper.opening(len(generations))
                if opening:
                    await response.write(opening)
            if isinstance(event, TextDelta):
                account.generated(event.tokens)
                piece = outputs[index].take(event.text, event.logprobs)
                if piece is not None:
                    await response.write(shaper.piece_chunk(index, piece))
            else:
                pieces, reason = outputs[index].finish(event.reason)
                total = _add(total, event)
                audit.finished(index, event)
                out = b"".join(shaper.piece_chunk(index, p) for p in pieces) + shaper.finish_chunk(index, reason)
                await response.write(out)
        account.finished(total.prompt_tokens, total.completion_tokens)
        sealed = audit.sealed()
        if sealed is not None:  # a comment: the gateway relays none, so only it sees the record
            await response.write(AUDIT_COMMENT + sealed.encode() + b"\n\n")
        await response.write(shaper.closing(total))
    except InferCDNError as exc:
        if not response.prepared:
            raise
        # Mid-stream: the status is already sent; end the stream with an error event.
        await response.write(sse(exc.body()) + DONE)
    await response.write_eof()
    return response


async def _events_of(generations: Sequence[Generation]) -> AsyncIterator[tuple[int, GenerationEvent]]:
    """Every choice's events, tagged with its index, as they come (interleaved across choices)."""
    if len(generations) == 1:  # the common case pays for no tasks
        async for event in generations[0].events():
            yield 0, event
        return
    merged: asyncio.Queue[tuple[int, GenerationEvent | Exception]] = asyncio.Queue()

    async def pump(index: int, generation: Generation) -> None:
        try:
            async for event in generation.events():
                merged.put_nowait((index, event))
        except Exception as exc:
            merged.put_nowait((index, exc))

    pumps = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        unfinished = len(generations)
        while unfinished:
            index, item = await merged.get()
            if isinstance(item, Exception):
                raise item
            yield index, item
            unfinished -= isinstance(item, Finished)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def _add(total: Finished, choice: Finished) -> Finished:
    """Usage over all choices: the prompt is read once; completions add up."""
    return Finished(
        choice.reason,
        choice.prompt_tokens,
        total.completion_tokens + choice.completion_tokens,
        cached_tokens=max(total.cached_tokens, choice.cached_tokens),
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
