"""The llama.cpp runtime: ``install`` GGUF models, loaded in this process, behind the worker's routes.

Importing this package does not import llama-cpp-python's Python API (a vLLM-only host has none);
loading does. Its native libraries were loaded when ``edge_worker`` was imported (``native_first``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from edge_worker.config import DEFAULT_MAX_CONTEXT, WorkerConfig
from edge_worker.metrics import WorkerMetrics
from edge_worker.runtimes.base import BACKEND
from edge_worker.runtimes.llama_cpp import api, embeddings_api
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.runtimes.llama_cpp.embedder import LlamaCppEmbedder, is_embedding_model, load_embedding_llama
from edge_worker.runtimes.llama_cpp.engine import EngineStats
from edge_worker.runtimes.llama_cpp.events import ModelRuntime
from edge_worker.runtimes.llama_cpp.gguf import read_metadata
from edge_worker.runtimes.llama_cpp.model import LlamaCppModel, kv_bytes_per_token, load_llama
from edge_worker.runtimes.llama_cpp.model_set import ModelSet
from edge_worker.runtimes.llama_cpp.offload import ALL_LAYERS
from edge_worker.runtimes.llama_cpp.prompt_store import PromptStore, default_budget
from edge_worker.runtimes.llama_cpp.slots import default_slots, machine_ram_bytes

log = logging.getLogger("edge_worker.app")


def model_paths(config: WorkerConfig) -> list[Path]:
    return [Path(p).expanduser() for p in config.models] or [bundled_model_path()]


def gpu_note(gpu_layers: int) -> str:
    if not gpu_layers:
        return ""
    return ", every layer on the GPU" if gpu_layers == ALL_LAYERS else f", {gpu_layers} layers on the GPU"


def generation_threads(config: WorkerConfig) -> int:
    """``threads``, or every core this process may run on (0 would leave llama.cpp at its own default
    of 4: on a 2-core machine its spinning threads then fight each other, at half the speed)."""
    return config.threads or len(os.sched_getaffinity(0)) or 1


async def load_models(config: WorkerConfig, metrics: WorkerMetrics) -> list[ModelRuntime]:
    runtimes: list[ModelRuntime] = []
    threads = generation_threads(config)
    paths = model_paths(config)
    for index, path in enumerate(paths, start=1):
        size_mb = path.stat().st_size / 1e6
        log.info("loading model %d/%d: %s (%.0f MB)…", index, len(paths), path.name, size_mb)
        started = time.monotonic()
        if is_embedding_model(await asyncio.to_thread(read_metadata, path)):
            runtimes.append(await _load_embedder(path, config, threads, started))
            continue
        llm, facts = await asyncio.to_thread(
            load_llama,
            path,
            context_length=config.context_length,
            threads=threads,
            max_context=DEFAULT_MAX_CONTEXT,
            gpu_layers=config.gpu_layers,
        )
        offer = facts.offer
        kv_per_token = kv_bytes_per_token(llm)
        slots = config.parallel or default_slots(
            cores=threads,
            context_per_slot=offer.context_length,
            kv_bytes_per_token=kv_per_token,
            ram_bytes=machine_ram_bytes(),
        )
        stats = EngineStats(
            batch_tokens=metrics.batch_tokens.labels(offer.model).observe,
            cached_tokens=metrics.prefix_cache_tokens.labels(offer.model).inc,
            restored_tokens=metrics.prompt_ram_tokens.labels(offer.model).inc,
            saved_bytes=metrics.prompt_ram_bytes.labels(offer.model).set,
        )
        ram_budget = (
            default_budget(machine_ram_bytes()) if config.prompt_cache_mib < 0 else config.prompt_cache_mib << 20
        )
        store = PromptStore(ram_budget // len(paths)) if ram_budget else None
        model = await asyncio.to_thread(
            LlamaCppModel,
            llm,
            facts,
            slots=slots,
            max_queue=config.max_queue,
            threads=threads,
            stats=stats,
            queue_wait=metrics.queue_wait.labels(offer.model).observe,
            prompt_store=store,
        )
        log.info(
            "loaded %s (%s, %s) in %.1f s: %d sequences at once (parallel%s), context %d each, KV cache %.0f MB, "
            "prompts given up kept in up to %.0f MB of RAM, %d threads%s",
            offer.model,
            offer.quantization.label,
            offer.architecture,
            time.monotonic() - started,
            slots,
            "" if config.parallel else ", automatic",
            offer.context_length,
            slots * offer.context_length * kv_per_token / 1e6,
            (store.max_bytes if store is not None else 0) / 1e6,
            threads,
            gpu_note(config.gpu_layers),
        )
        runtimes.append(model)
    return runtimes


async def _load_embedder(path: Path, config: WorkerConfig, threads: int, started: float) -> LlamaCppEmbedder:
    llm, facts = await asyncio.to_thread(
        load_embedding_llama,
        path,
        context_length=config.context_length,
        threads=threads,
        max_context=DEFAULT_MAX_CONTEXT,
        gpu_layers=config.gpu_layers,
    )
    embedder = LlamaCppEmbedder(llm, facts, max_queue=config.max_queue)
    offer = embedder.offer
    log.info(
        "loaded %s (%s, %s) in %.1f s: an embedding model, %d dimensions, up to %d tokens an input",
        offer.model,
        offer.quantization.label,
        offer.architecture,
        time.monotonic() - started,
        embedder.dimensions,
        offer.context_length,
    )
    return embedder


def _export_model_metrics(metrics: WorkerMetrics, runtime: ModelRuntime) -> None:
    offer, q = runtime.offer, runtime.offer.quantization
    metrics.model_info.labels(offer.model, q.label, q.quant_class, offer.runtime, str(offer.context_length)).set(1)
    metrics.in_flight.labels(offer.model).set_function(lambda: runtime.in_flight)
    metrics.queue_depth.labels(offer.model).set_function(lambda: runtime.queued)


def install(app: web.Application, config: WorkerConfig, metrics: WorkerMetrics) -> None:
    app[api.METRICS] = metrics

    async def models_ctx(app: web.Application) -> AsyncIterator[None]:
        runtimes = await load_models(config, metrics)
        models = ModelSet(runtimes, capacity=max(r.slots for r in runtimes))
        app[api.MODELS] = models
        app[BACKEND] = models
        for runtime in runtimes:
            _export_model_metrics(metrics, runtime)
        yield
        for r in runtimes:
            await r.close()

    app.cleanup_ctx.append(models_ctx)
    api.add_routes(app)
    embeddings_api.add_routes(app)
