"""One worker, two GGUF files of the same model at different quantizations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import llama_cpp
import pytest

from bench.servers import Server, running
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from tests.conftest import MODEL


@pytest.fixture(scope="module")
def q8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Q8_0 requantization of the bundled Q4_1 SmolLM2 (llama.cpp's own quantizer)."""
    out = tmp_path_factory.mktemp("models") / "SmolLM2-135M-Instruct.Q8_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(str(bundled_model_path()).encode(), str(out).encode(), params)
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def two_quant_worker(q8_model: Path) -> Iterator[Server]:
    with running(
        "edge_worker", "--model", str(bundled_model_path()), "--model", str(q8_model), "--context-length", "2048"
    ) as server:
        yield server


async def test_both_quantizations_are_offered(two_quant_worker: Server) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"{two_quant_worker.url}/v1/models") as resp:
        data = (await resp.json())["data"]
    assert [(m["id"], m["quantization"]["label"], m["context_length"]) for m in data] == [
        (MODEL, "Q4_1", 2048),
        (MODEL, "Q8_0", 2048),
    ]


async def test_quantization_suffix_selects_the_file(two_quant_worker: Server) -> None:
    body = {"prompt": "The capital of France is", "temperature": 0, "max_tokens": 2}
    async with aiohttp.ClientSession() as s:
        for name in (f"{MODEL}:Q8_0", f"{MODEL}:int8", f"{MODEL}:q4_1"):
            async with s.post(f"{two_quant_worker.url}/v1/completions", json={**body, "model": name}) as resp:
                assert resp.status == 200, await resp.text()
                assert "Paris" in (await resp.json())["choices"][0]["text"]
        async with s.post(f"{two_quant_worker.url}/v1/completions", json={**body, "model": f"{MODEL}:fp16"}) as resp:
            assert resp.status == 404
