"""An upstream that answers instantly, for measuring what a proxy adds.

``python bench/standin_upstream.py PORT``: serves /v1/models (one offer),
and /v1/chat/completions as a small JSON body, or, with ``"stream": true``,
a 64-chunk SSE stream.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable

import uvloop
from aiohttp import web

from routing.fleet import ModelOffer
from routing.quantization import Quantization
from routing.wire import offer_to_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MODEL = "bench-model"
CHUNKS = 64
BODY = json.dumps(
    {"id": "x", "object": "chat.completion", "model": MODEL, "choices": [{"index": 0, "message": {"content": "ok"}}]}
).encode()
CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"tok"}}]}\n\n'


async def models(request: web.Request) -> web.Response:
    offer = ModelOffer(MODEL, Quantization("Q4_1", 4, "int4"), 4096, "llama.cpp")
    return web.json_response({"object": "list", "data": [offer_to_json(offer, 0)]})


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if b'"stream": true' not in body and b'"stream":true' not in body:
        return web.Response(body=BODY, content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for _ in range(CHUNKS):
        await resp.write(CHUNK)
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def standin_app(completions: Handler) -> web.Application:
    """/v1/models, /health and, for completions, ``completions``."""
    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/health", health)
    return app


def serve(completions: Handler) -> None:
    """``standin_app(completions)`` on the port in argv[1]."""
    uvloop.install()
    web.run_app(standin_app(completions), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


def main() -> None:
    serve(chat)


if __name__ == "__main__":
    main()
