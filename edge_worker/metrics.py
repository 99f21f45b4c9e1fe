"""The worker's Prometheus metrics, in a registry owned by one app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from routing.telemetry import INTER_TOKEN_BUCKETS, LATENCY_BUCKETS

# LLM latencies run from milliseconds to minutes.


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter(
            "infercdn_worker_requests",
            "Requests answered, by model, endpoint and status.",
            ["model", "endpoint", "status"],
            registry=r,
        )
        self.in_flight = Gauge("infercdn_worker_in_flight", "Generations running now.", ["model"], registry=r)
        self.queue_depth = Gauge(
            "infercdn_worker_queue_depth", "Requests waiting for a generation slot.", ["model"], registry=r
        )
        self.prompt_tokens = Counter("infercdn_worker_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r)
        self.generation_tokens = Counter(
            "infercdn_worker_generation_tokens", "Tokens generated.", ["model"], registry=r
        )
        self.cancelled = Counter(
            "infercdn_worker_generations_cancelled",
            "Generations stopped early because the client went away.",
            ["model"],
            registry=r,
        )
        self.ttft = Histogram(
            "infercdn_worker_time_to_first_token_seconds",
            "Time from admission to first token.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inter_token = Histogram(
            "infercdn_worker_inter_token_latency_seconds",
            "Time between streamed tokens.",
            ["model"],
            buckets=INTER_TOKEN_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Gauge(
            "infercdn_worker_generation_tokens_per_second",
            "Decode speed of the last generation.",
            ["model"],
            registry=r,
        )
        # The same, readable here: heartbeats carry it to gateways.
        self.last_tokens_per_second: dict[str, float] = {}
        self.batch_tokens = Histogram(
            "infercdn_worker_batch_tokens",
            "Tokens in each batched decode step (generating sequences plus prompt chunks).",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.prefix_cache_tokens = Counter(
            "infercdn_worker_prefix_cache_tokens",
            "Prompt tokens read from the KV cache of an earlier request instead of computed.",
            ["model"],
            registry=r,
        )
        self.prompt_ram_tokens = Counter(
            "infercdn_worker_prompt_ram_tokens",
            "Of the prefix-cache tokens, those put back from RAM (a slot had given them up).",
            ["model"],
            registry=r,
        )
        self.prompt_ram_bytes = Gauge(
            "infercdn_worker_prompt_ram_bytes",
            "RAM holding the KV of prompts slots gave up.",
            ["model"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "infercdn_worker_queue_wait_seconds",
            "Time a request waited for a free sequence slot.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "infercdn_worker_model_info",
            "Loaded models (value 1).",
            ["model", "quantization", "quantization_class", "runtime", "context_length"],
            registry=r,
        )
