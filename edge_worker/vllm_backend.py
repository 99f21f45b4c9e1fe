"""The vLLM backend: a supervised (or attached) vLLM server behind the worker's API.

The worker starts ``vllm serve`` on a private loopback port (or attaches to
one with ``vllm_url``), learns its offer once it is up (id, quantization from
``config.json``, context from vLLM's own ``max_model_len``), and reads its load
from vLLM's ``/metrics`` every second for heartbeats and ``/health``. Requests
are relayed byte for byte (``vllm_relay``); while vLLM is down the worker's
``/health`` says 503, so gateways stop sending it traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import aiohttp
from aiohttp import web

from edge_worker import api
from edge_worker.backend import BACKEND
from edge_worker.config import WorkerConfig
from edge_worker.hf_model import context_from_config, find_config, quantization_from_config, read_config
from edge_worker.metrics import WorkerMetrics
from edge_worker.runtimes.vllm_process import VllmProcess
from edge_worker.vllm_metrics import VllmLoad, parse_vllm_metrics
from edge_worker.vllm_relay import VllmRelay
from routing.fleet import Load, ModelOffer
from routing.supervise import start_supervised

log = logging.getLogger("edge_worker.vllm")

DEFAULT_VLLM_CAPACITY = 32


def served_name(config: WorkerConfig) -> str:
    if config.served_model_name:
        return config.served_model_name
    if not config.models:
        return ""
    source = config.models[0].rstrip("/")
    base = Path(source).name if Path(source).expanduser().exists() else source.rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-")


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class VllmBackend:
    runtime = "vllm"

    def __init__(self, config: WorkerConfig, metrics: WorkerMetrics):
        self.capacity = config.capacity or DEFAULT_VLLM_CAPACITY
        self.ready = asyncio.Event()
        self.healthy = False
        self.offer: ModelOffer | None = None
        self.vllm_load = VllmLoad()
        self._config = config
        self._metrics = metrics
        self._name = served_name(config)
        self.url = config.vllm_url.rstrip("/") or f"http://127.0.0.1:{_free_loopback_port()}"
        self.process: VllmProcess | None = None
        if not config.vllm_url:
            port = self.url.rsplit(":", 1)[1]
            command = [*config.vllm_launcher, "--model", config.models[0], "--host", "127.0.0.1", "--port", port]
            command += ["--served-model-name", self._name, *config.vllm_args]
            self.process = VllmProcess(command, self.url, on_change=self._set_up)

    def offers(self) -> tuple[ModelOffer, ...]:
        return () if self.offer is None else (self.offer,)

    def load(self) -> Load:
        vl = self.vllm_load
        return Load(in_flight=vl.running, queued=vl.waiting, kv_cache_usage=vl.kv_cache_usage)

    def _set_up(self, up: bool) -> None:
        if up != self.healthy:
            self.healthy = up
            if not up:
                log.warning("vLLM is down: this worker reports itself unhealthy until it is back")

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Supervise (or watch) vLLM; learn the offer once up; poll its load every second."""
        supervisor = asyncio.create_task(self.process.run()) if self.process is not None else None
        try:
            while True:
                if self.process is None:
                    self._set_up(await self._answers(session, "/health"))
                if self.healthy:
                    if self.offer is None:
                        await self._learn_offer(session)
                    await self._read_load(session)
                await asyncio.sleep(1.0)
        finally:
            if supervisor is not None:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor

    async def _answers(self, session: aiohttp.ClientSession, path: str) -> bool:
        try:
            async with session.get(self.url + path, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _learn_offer(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(f"{self.url}/v1/models", timeout=aiohttp.ClientTimeout(total=10)) as resp:
                cards = (await resp.json())["data"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            return
        card = next((c for c in cards if c.get("id") == self._name), cards[0] if cards else None)
        if card is None:
            return
        self._name = str(card["id"])
        source = self._config.models[0] if self._config.models else str(card.get("root") or self._name)
        hf = read_config(find_config(source))
        context = int(card.get("max_model_len") or 0) or context_from_config(hf)
        architectures = hf.get("architectures") or [""]
        self.offer = ModelOffer(
            model=self._name,
            quantization=quantization_from_config(hf),
            context_length=context,
            runtime="vllm",
            architecture=str(architectures[0]),
        )
        q = self.offer.quantization
        log.info("vLLM serves %s (%s, %s, context %d)", self._name, q.label, q.quant_class, context)
        self._metrics.model_info.labels(self._name, q.label, q.quant_class, "vllm", str(context)).set(1)
        self._metrics.in_flight.labels(self._name).set_function(lambda: self.vllm_load.running)
        self._metrics.queue_depth.labels(self._name).set_function(lambda: self.vllm_load.waiting)
        self.ready.set()

    async def _read_load(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(f"{self.url}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                self.vllm_load = parse_vllm_metrics(await resp.text())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass


def install_vllm(app: web.Application, config: WorkerConfig, metrics: WorkerMetrics) -> None:
    backend = VllmBackend(config, metrics)
    app[BACKEND] = backend
    relay = VllmRelay(backend, metrics, started_at=app[api.STARTED_AT])

    async def vllm_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            relay.session = session
            task = start_supervised("vLLM watch", partial(backend.run, session))
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(vllm_ctx)
    relay.add_routes(app)
