"""Quantization from real config.json shapes, and load from a real vLLM /metrics exposition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_worker.runtimes.vllm.hf_model import context_from_config, find_config, quantization_from_config, read_config
from edge_worker.runtimes.vllm.load import parse_vllm_metrics

# quantization_config blocks as they appear in published models' config.json.
AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
GPTQ_8 = {"quant_method": "gptq", "bits": 8, "group_size": 128, "desc_act": False, "sym": True}
FP8 = {"quant_method": "fp8", "activation_scheme": "dynamic", "fmt": "e4m3"}
CT_FP8 = {
    "quant_method": "compressed-tensors",
    "format": "float-quantized",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True},
            "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True},
        }
    },
}
CT_W4A16 = {
    "quant_method": "compressed-tensors",
    "format": "pack-quantized",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True},
            "input_activations": None,
        }
    },
}
CT_W8A8 = {
    "quant_method": "compressed-tensors",
    "format": "int-quantized",
    "config_groups": {
        "group_0": {
            "weights": {"num_bits": 8, "type": "int", "strategy": "channel"},
            "input_activations": {"num_bits": 8, "type": "int", "dynamic": True},
        }
    },
}
BNB = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}


@pytest.mark.parametrize(
    ("config", "label", "bits", "cls"),
    [
        ({"torch_dtype": "bfloat16", "quantization_config": AWQ}, "awq", 4, "int4"),
        ({"quantization_config": GPTQ_8}, "gptq", 8, "int8"),
        ({"quantization_config": FP8}, "fp8", 8, "fp8"),
        ({"quantization_config": CT_FP8}, "fp8", 8, "fp8"),
        ({"quantization_config": CT_W4A16}, "w4a16", 4, "int4"),
        ({"quantization_config": CT_W8A8}, "w8a8", 8, "int8"),
        ({"quantization_config": BNB}, "bitsandbytes", 4, "int4"),
        ({"torch_dtype": "bfloat16"}, "bf16", 16, "bf16"),
        ({"dtype": "float16"}, "fp16", 16, "fp16"),
        ({}, "unknown", 0, "unknown"),
    ],
)
def test_quantization_from_config(config: dict[str, object], label: str, bits: int, cls: str) -> None:
    q = quantization_from_config(config)
    assert (q.label, q.bits, q.quant_class) == (label, bits, cls)


def test_config_is_found_in_a_directory_or_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "SmolLM2-HF"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 8192, "torch_dtype": "bfloat16"}))
    assert context_from_config(read_config(find_config(str(model)))) == 8192
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"quantization_config": AWQ}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert quantization_from_config(read_config(find_config("org/tiny"))).label == "awq"
    assert find_config("org/absent") is None


# An excerpt of a real vLLM 0.1x /metrics page (two engines), including the deprecated name.
EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0
vllm:num_requests_waiting{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.42
vllm:kv_cache_usage_perc{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.17
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1234.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 7.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 7.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.9
"""

OLD_EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="facebook/opt-125m"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="facebook/opt-125m"} 0.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="facebook/opt-125m"} 0.05
"""


def test_vllm_load_sums_engines_and_takes_the_fullest_cache() -> None:
    load = parse_vllm_metrics(EXPOSITION)
    assert (load.running, load.waiting, load.kv_cache_usage) == (5, 5, 0.42)


def test_older_vllm_reports_gpu_cache_usage() -> None:
    load = parse_vllm_metrics(OLD_EXPOSITION)
    assert (load.running, load.waiting, load.kv_cache_usage) == (1, 0, 0.05)
