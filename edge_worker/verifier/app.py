"""The verifier's HTTP face: which file it holds, and scoring one answer (``routing.verification``).

Only gateways holding the verifier key may ask (a bearer token, compared in
constant time). Scoring runs on a thread, one answer at a time; a bounded
number wait, and beyond that it answers 503 at once, so an overloaded
verifier sheds audits instead of holding gateways' connections.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

from aiohttp import web

from edge_worker.errors import openai_errors
from edge_worker.verifier.config import VerifierConfig
from edge_worker.verifier.reference import Reference
from edge_worker.verifier.vllm_reference import VllmReference
from routing.consul_client import consul_client
from routing.consul_service import ConsulService
from routing.errors import Busy, Unauthorized
from routing.http_errors import Handler
from routing.openai_requests import decode_json_object
from routing.verification import INFO_PATH, SCORE_PATH, Score, ScoreRequest, VerifierInfo
from routing.verifier_presence import LIFETIME_S as PRESENCE_LIFETIME_S
from routing.verifier_presence import SERVICE as VERIFIER_SERVICE
from routing.verifier_presence import presence_meta
from routing.verifier_presence import service_id as verifier_service_id

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """A reference: the weights it holds (by digest), and scoring one answer against them."""

    @property
    def model(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    async def score(self, job: ScoreRequest) -> Score: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class GgufScorer:
    """The llama.cpp reference, whose scoring blocks: on a thread, one at a time."""

    reference: Reference

    @property
    def model(self) -> str:
        return self.reference.facts.offer.model

    @property
    def sha256(self) -> str:
        return self.reference.sha256

    async def score(self, job: ScoreRequest) -> Score:
        return await asyncio.to_thread(self.reference.score, job)

    async def close(self) -> None:
        await asyncio.to_thread(self.reference.close)


async def open_scorer(config: VerifierConfig) -> Scorer:
    model = await asyncio.to_thread(Path(config.model).expanduser)
    if config.vllm_url:
        return await VllmReference.attach(config.vllm_url, model, config.vllm_top_logprobs)
    if await asyncio.to_thread(model.is_dir):
        return await VllmReference.supervise(
            model, config.vllm_launcher, config.vllm_args, config.vllm_hung_restart_s, config.vllm_top_logprobs
        )
    reference = await asyncio.to_thread(
        Reference,
        model,
        threads=config.threads,
        context_length=config.context_length,
        gpu_layers=config.gpu_layers,
    )
    return GgufScorer(reference)


REFERENCE = web.AppKey("reference", Scorer)


def create_app(config: VerifierConfig) -> web.Application:
    expected = f"Bearer {config.key}".encode()

    @web.middleware
    async def keyed(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("A verifier answers only gateways holding its key.")
        return await handler(request)

    app = web.Application(middlewares=[openai_errors, keyed], client_max_size=32 << 20)
    waiting = 0

    async def reference_ctx(app: web.Application) -> AsyncIterator[None]:
        reference = await open_scorer(config)
        log.info("verifying against %s (sha256 %s)", config.model, reference.sha256)
        app[REFERENCE] = reference
        yield
        await reference.close()

    async def info(request: web.Request) -> web.Response:
        reference = request.app[REFERENCE]
        return web.json_response(VerifierInfo(reference.model, reference.sha256).to_json())

    async def score(request: web.Request) -> web.Response:
        nonlocal waiting
        job = ScoreRequest.from_json(decode_json_object(await request.read()))
        if waiting > config.max_queue:
            raise Busy("The verifier is busy; the audit is dropped.", retry_after_s=1)
        waiting += 1
        try:
            result = await request.app[REFERENCE].score(job)
        finally:
            waiting -= 1
        return web.json_response(result.to_json())

    async def presence_ctx(app: web.Application) -> AsyncIterator[None]:
        """In Consul, for gateways to find (``routing.verifier_presence``), once the reference is loaded."""
        if not (config.consul_url and config.public_url):
            yield
            return
        client = consul_client(config.consul_url)
        url = config.public_url.rstrip("/")
        presence = ConsulService(
            client,
            VERIFIER_SERVICE,
            verifier_service_id(url),
            url,
            partial(presence_meta, url, config.key),
            lifetime_s=PRESENCE_LIFETIME_S,
        )
        presence.start()
        yield
        await presence.deregister()
        await client.close()

    app.cleanup_ctx.append(reference_ctx)
    app.cleanup_ctx.append(presence_ctx)
    app.router.add_get(INFO_PATH, info)
    app.router.add_post(SCORE_PATH, score)
    return app
