"""The vLLM backend: a supervised (or attached) vLLM server behind the worker's API.

The worker starts ``vllm serve`` on a private loopback port (or attaches to
one with ``vllm_url``), learns its offer once it is up (id, quantization from
``config.json``, context from vLLM's own ``max_model_len``), and every second
polls its ``/health`` and reads its load from its ``/metrics``. A vLLM that
stops answering (dead *or* hung) makes the worker's ``/health`` say 503, so
gateways stop sending it traffic; a supervised one silent for
``vllm_hung_restart_s`` is restarted.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import aiohttp

from edge_worker.config import WorkerConfig
from edge_worker.metrics import WorkerMetrics
from edge_worker.runtimes.vllm.hf_model import context_from_config, find_config, quantization_from_config, read_config
from edge_worker.runtimes.vllm.load import VllmLoad, parse_vllm_metrics
from edge_worker.runtimes.vllm.process import VllmProcess
from edge_worker.runtimes.vllm.weights_digest import directory_digest
from routing.capabilities import EMBEDDING_ONLY, MAX_N, Capabilities
from routing.fleet import Load, ModelOffer

log = logging.getLogger("edge_worker.vllm")

DEFAULT_VLLM_CAPACITY = 32
POLL_INTERVAL_S = 1.0
FAILED_POLLS_TO_DOWN = 2  # one slow answer is not a hung server


def served_name(config: WorkerConfig) -> str:
    if config.served_model_name:
        return config.served_model_name
    if not config.models:
        return ""
    source = config.models[0].rstrip("/")
    base = Path(source).name if Path(source).expanduser().exists() else source.rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-")


class VllmBackend:
    runtime = "vllm"

    def __init__(self, config: WorkerConfig, metrics: WorkerMetrics):
        self.capacity = config.capacity or DEFAULT_VLLM_CAPACITY
        self.ready = asyncio.Event()
        self.offer: ModelOffer | None = None
        self.vllm_load = VllmLoad()
        self._config = config
        self._metrics = metrics
        self._name = served_name(config)
        self._hung_restart_s = config.vllm_hung_restart_s
        self._poll_timeout = aiohttp.ClientTimeout(total=min(5.0, config.vllm_hung_restart_s / 4))
        # Where vLLM answers: fixed when attached; the supervisor's, while its server is up.
        self.url: str | None = config.vllm_url.rstrip("/") or None
        self._failed_polls = 0
        self._answered_at = time.monotonic()
        self.process: VllmProcess | None = None
        if not config.vllm_url:
            self.process = VllmProcess(self._command, on_change=self._server_changed)

    @property
    def serving(self) -> bool:
        return self.url is not None and self.offer is not None and self._failed_polls < FAILED_POLLS_TO_DOWN

    def offers(self) -> tuple[ModelOffer, ...]:
        return () if self.offer is None else (self.offer,)

    def load(self) -> Load:
        vl = self.vllm_load
        return Load(in_flight=vl.running, queued=vl.waiting, kv_cache_usage=vl.kv_cache_usage)

    def _command(self, port: int) -> list[str]:
        config = self._config
        command = [*config.vllm_launcher, "--model", config.models[0], "--host", "127.0.0.1", "--port", str(port)]
        return [*command, "--served-model-name", self._name, *config.vllm_args]

    def _server_changed(self, url: str | None) -> None:
        if url is None and self.url is not None:
            log.warning("vLLM is down: this worker reports itself unhealthy until it is back")
        self.url = url
        self._failed_polls = 0
        self._answered_at = time.monotonic()

    async def poll(self, session: aiohttp.ClientSession) -> None:
        """Forever: is vLLM answering; what does it serve; how loaded is it."""
        while True:
            url = self.url
            if url is not None:
                await self._check(session, url)
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _check(self, session: aiohttp.ClientSession, url: str) -> None:
        if await self._answers(session, url + "/health"):
            if self._failed_polls >= FAILED_POLLS_TO_DOWN:
                log.info("vLLM answers its health check again")
            self._failed_polls, self._answered_at = 0, time.monotonic()
            if self.offer is None:
                await self._learn_offer(session, url)
            await self._read_load(session, url)
            return
        self._failed_polls += 1
        if self._failed_polls == FAILED_POLLS_TO_DOWN:
            log.warning("vLLM does not answer its health check: this worker reports itself unhealthy")
        silent_s = time.monotonic() - self._answered_at
        if self.process is not None and silent_s >= self._hung_restart_s:
            log.error("vLLM has not answered its health check for %.0f s: restarting it", silent_s)
            self._answered_at = time.monotonic()
            await self.process.restart()

    async def _answers(self, session: aiohttp.ClientSession, url: str) -> bool:
        try:
            async with session.get(url, timeout=self._poll_timeout) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _learn_offer(self, session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with session.get(f"{url}/v1/models", timeout=aiohttp.ClientTimeout(total=10)) as resp:
                cards = (await resp.json())["data"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            return
        card = next((c for c in cards if c.get("id") == self._name), cards[0] if cards else None)
        if card is None:
            return
        self._name = str(card["id"])
        embeds = await self._runs_an_embedding_model(session, url)
        if embeds is None:
            return  # asked again at the next poll
        source = self._config.models[0] if self._config.models else str(card.get("root") or self._name)
        found = await asyncio.to_thread(find_config, source)  # disk, maybe a big HF cache
        hf = await asyncio.to_thread(read_config, found)
        sha256 = "" if embeds else await self._digest_of(found)
        context = int(card.get("max_model_len") or 0) or context_from_config(hf)
        architectures = hf.get("architectures") or [""]
        self.offer = ModelOffer(
            model=self._name,
            quantization=quantization_from_config(hf),
            context_length=context,
            runtime="vllm",
            architecture=str(architectures[0]),
            capabilities=EMBEDDING_ONLY if embeds else vllm_capabilities(hf),
            sha256=sha256,
        )
        q = self.offer.quantization
        kind = "embeddings" if embeds else "generation"
        log.info("vLLM serves %s for %s (%s, %s, context %d)", self._name, kind, q.label, q.quant_class, context)
        self._metrics.model_info.labels(self._name, q.label, q.quant_class, "vllm", str(context)).set(1)
        self._metrics.in_flight.labels(self._name).set_function(lambda: self.vllm_load.running)
        self._metrics.queue_depth.labels(self._name).set_function(lambda: self.vllm_load.waiting)
        self.ready.set()

    async def _digest_of(self, config: Path | None) -> str:
        """The model directory's digest (``weights_digest``), which audits check answers against; "" (not
        audited) where there is no local directory to read."""
        if config is None:
            log.warning("no local model directory for %s: its answers cannot be audited", self._name)
            return ""
        started = time.monotonic()
        try:
            digest = await asyncio.to_thread(directory_digest, config.parent)
        except OSError as exc:
            log.warning("could not read %s to name its weights (%s): its answers cannot be audited", config.parent, exc)
            return ""
        log.info("weights of %s: sha256 %s (read in %.1f s)", self._name, digest, time.monotonic() - started)
        return digest

    async def _runs_an_embedding_model(self, session: aiohttp.ClientSession, url: str) -> bool | None:
        """Whether vLLM's runner pools (an embedding model) rather than generates; None if unsure yet.

        vLLM registers only the routes of its runner's tasks (older releases answer the others with a
        400), so one tiny input tells, whatever flags (``--runner pooling``, ``--convert embed``) or
        architecture decided it."""
        body = {"model": self._name, "input": "ping"}
        try:
            async with session.post(f"{url}/v1/embeddings", json=body, timeout=self._poll_timeout) as resp:
                if resp.status == 200:
                    return True
                return False if resp.status in (400, 404, 405, 501) else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _read_load(self, session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with session.get(f"{url}/metrics", timeout=self._poll_timeout) as resp:
                self.vllm_load = parse_vllm_metrics(await resp.text())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass


def vllm_capabilities(hf_config: dict[str, Any]) -> Capabilities:
    """What vLLM does for any model it serves (guided decoding forces tools and schemas; logprobs and n
    are native), and images where the model has a vision tower. ``tool_choice: auto`` also needs vLLM
    started with ``--enable-auto-tool-choice`` (in ``vllm_args``); without it vLLM's own 400 says so."""
    return Capabilities(
        tools=True,
        structured_output=True,
        logprobs=True,
        vision="vision_config" in hf_config,
        max_n=MAX_N,
    )
