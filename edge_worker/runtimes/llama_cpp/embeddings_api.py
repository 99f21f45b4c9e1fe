"""The llama.cpp runtime's ``/v1/embeddings`` route, in OpenAI's shape.

``encoding_format: base64`` is each vector's little-endian float32 bytes in
base64 (what the official SDK asks for, and decodes, by default): about a
quarter of the bytes of the JSON numbers.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from edge_worker.accounting import RequestAccount
from edge_worker.runtimes.llama_cpp.api import METRICS, MODELS
from edge_worker.runtimes.llama_cpp.embedder import Embeddings
from routing.embedding_requests import EncodingFormat, parse_embedding_request
from routing.http_errors import reported_status
from routing.openai_requests import decode_json_object
from routing.wire import REQUEST_ID


async def embeddings(request: web.Request) -> web.Response:
    embedding_request = parse_embedding_request(decode_json_object(await request.read()))
    runtime = request.app[MODELS].lookup(embedding_request.model)
    account = RequestAccount(
        request.app[METRICS], runtime.offer.model, "embeddings", request.headers.get(REQUEST_ID, "-")
    )
    with reported_status(account.close) as status:
        result = await runtime.embed(embedding_request)
        account.finished(result.prompt_tokens, 0)
        body = embeddings_body(runtime.offer.model, result, embedding_request.encoding_format)
        status.code = 200
        return web.Response(body=body, content_type="application/json")


def embeddings_body(model: str, result: Embeddings, encoding_format: EncodingFormat) -> bytes:
    data: list[dict[str, Any]] = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector, encoding_format)}
        for index, vector in enumerate(result.vectors)
    ]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    body = {"object": "list", "data": data, "model": model, "usage": usage}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _encoded(vector: np.ndarray, encoding_format: EncodingFormat) -> Any:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", embeddings)
