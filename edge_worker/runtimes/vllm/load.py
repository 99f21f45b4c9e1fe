"""vLLM's own load, read from its Prometheus ``/metrics``.

``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` (summed over
engines), and ``vllm:kv_cache_usage_perc`` (0..1), falling back to the
deprecated ``vllm:gpu_cache_usage_perc`` of older releases.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class VllmLoad:
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float | None = None


def parse_vllm_metrics(text: str) -> VllmLoad:
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (
                "vllm:num_requests_running",
                "vllm:num_requests_waiting",
                "vllm:kv_cache_usage_perc",
                "vllm:gpu_cache_usage_perc",
            ):
                if sample.name.endswith("_perc"):
                    sums[sample.name] = max(sums.get(sample.name, 0.0), sample.value)  # the fullest engine
                else:
                    sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    usage = sums.get("vllm:kv_cache_usage_perc", sums.get("vllm:gpu_cache_usage_perc"))
    return VllmLoad(
        running=int(sums.get("vllm:num_requests_running", 0)),
        waiting=int(sums.get("vllm:num_requests_waiting", 0)),
        kv_cache_usage=usage,
    )
