"""A verifier's settings: a GGUF file for llama.cpp workers, or a model directory for vLLM workers (scored by a
vLLM the verifier starts, or by the one at ``vllm_url``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.verifier.config import VerifierConfig
from routing.settings import ConfigError

KEY = "verifier-key-0123456789abcdef"


def test_a_gguf_file_or_a_directory_with_its_own_vllm_or_another(tmp_path: Path) -> None:
    VerifierConfig(model=str(bundled_model_path()), key=KEY).check()
    VerifierConfig(model=str(tmp_path), key=KEY).check()
    VerifierConfig(model=str(tmp_path), vllm_url="http://127.0.0.1:8000", key=KEY).check()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"vllm_url": "http://127.0.0.1:8000"}, "verifier.model"),  # a file, where vLLM serves a directory
        ({"vllm_url": "127.0.0.1:8000", "model": "DIR"}, "verifier.vllm_url"),
        ({"model": "/nowhere/model.gguf"}, "verifier.model"),
        ({"model": "DIR", "vllm_launcher": ()}, "verifier.vllm_launcher"),
        ({"model": "DIR", "vllm_top_logprobs": 10}, "verifier.vllm_top_logprobs"),  # fewer than vLLM's default
        ({"model": "DIR", "vllm_top_logprobs": 50_000}, "verifier.vllm_top_logprobs"),
    ],
)
def test_a_mismatch_is_refused_naming_the_setting(tmp_path: Path, settings: dict[str, Any], named: str) -> None:
    values = {"model": str(bundled_model_path()), "key": KEY, **settings}
    values["model"] = str(tmp_path) if values["model"] == "DIR" else values["model"]
    with pytest.raises(ConfigError, match=named):
        VerifierConfig(**values).check()
