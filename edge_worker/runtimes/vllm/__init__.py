"""The vLLM runtime: ``install`` a supervised (or attached) vLLM server behind the worker's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import aiohttp
from aiohttp import web

from edge_worker.config import WorkerConfig
from edge_worker.metrics import WorkerMetrics
from edge_worker.runtimes.base import BACKEND
from edge_worker.runtimes.vllm.backend import VllmBackend
from edge_worker.runtimes.vllm.relay import VllmRelay
from routing.supervise import start_supervised, stop_all


def install(app: web.Application, config: WorkerConfig, metrics: WorkerMetrics) -> None:
    backend = VllmBackend(config, metrics)
    app[BACKEND] = backend
    relay = VllmRelay(backend, metrics)

    async def vllm_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            relay.session = session
            tasks = [start_supervised("vLLM poll", partial(backend.poll, session))]
            if backend.process is not None:
                tasks.append(start_supervised("vLLM supervisor", backend.process.run))
            yield
            await stop_all(tasks)

    app.cleanup_ctx.append(vllm_ctx)
    relay.add_routes(app)
