"""A stand-in upstream worker: a real aiohttp server on loopback whose
answers each test scripts. It speaks the worker's wire format (``/v1/models``
with offers) so the gateway treats it as any worker."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from gateway.app import create_app
from gateway.config import GatewayConfig
from routing.fleet import ModelOffer
from routing.quantization import Quantization
from routing.wire import offer_to_json

MODEL = "standin-model"
OFFER = ModelOffer(MODEL, Quantization("Q8_0", 8, "int8"), 4096, "llama.cpp")
OK_BODY = {"id": "cmpl-1", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "hi"}}]}

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def answer_ok(request: web.Request) -> web.StreamResponse:
    return web.json_response(OK_BODY)


@dataclass
class StandIn:
    behaviour: Behaviour = answer_ok
    offer: ModelOffer = OFFER
    hits: int = 0
    probes: int = 0
    seen_headers: list[CIMultiDict[str]] = field(default_factory=list)
    seen_bodies: list[bytes] = field(default_factory=list)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    @property
    def app(self) -> web.Application:
        """Its application, for serving it in-process (through a tunnel, as a worker serves its own API)."""
        assert self.server is not None
        return self.server.app

    async def start(self) -> StandIn:
        app = web.Application()

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [offer_to_json(self.offer, 0)]})

        async def generate(request: web.Request) -> web.StreamResponse:
            self.hits += 1
            self.seen_headers.append(request.headers.copy())
            self.seen_bodies.append(await request.read())
            return await self.behaviour(request)

        async def health(request: web.Request) -> web.Response:
            self.probes += 1
            return web.json_response({"status": "ok"})

        app.router.add_get("/health", health)
        app.router.add_get("/v1/models", models)
        app.router.add_post("/v1/chat/completions", generate)
        app.router.add_post("/v1/completions", generate)
        app.router.add_post("/v1/embeddings", generate)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()


async def answer_stream(request: web.Request) -> web.StreamResponse:
    """A chat stream of one token, as a worker sends it."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def answer_500(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": {"message": "boom"}}, status=500)


async def answer_busy(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": {"message": "busy"}}, status=503, headers={"Retry-After": "7"})


async def never_answer(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def start_standin(standins: list[StandIn], **kw: object) -> StandIn:
    s = await StandIn(**kw).start()  # type: ignore[arg-type]
    standins.append(s)
    return s


async def start_gateway(gateways: list[TestServer], *urls: str, **settings: object) -> str:
    """A gateway in this process in front of ``urls``, closed by the ``gateways`` fixture."""
    config = GatewayConfig(workers=urls, refresh_interval_s=3600, **settings)  # type: ignore[arg-type]
    server = TestServer(create_app(config, rng=random.Random(7)), host="127.0.0.1", handler_cancellation=True)
    await server.start_server()
    gateways.append(server)
    return str(server.make_url("")).rstrip("/")
