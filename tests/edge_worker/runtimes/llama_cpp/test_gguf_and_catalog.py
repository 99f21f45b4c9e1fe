"""GGUF metadata from the real bundled model file."""

from pathlib import Path

import pytest

from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path, facts_from_metadata, model_id_for
from edge_worker.runtimes.llama_cpp.gguf import GgufError, read_metadata


def test_reads_the_bundled_smollm2_header() -> None:
    meta = read_metadata(bundled_model_path())
    assert meta["general.architecture"] == "llama"
    assert meta["general.file_type"] == 3
    assert meta["llama.context_length"] == 8192
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    assert meta["tokenizer.ggml.tokens"] is None  # large tables are skipped, not kept


def test_offer_from_metadata() -> None:
    path = bundled_model_path()
    facts = facts_from_metadata(read_metadata(path), path, 2048)
    assert facts.offer.model == "smollm2-135m-instruct"
    assert (facts.offer.quantization.label, facts.offer.quantization.quant_class) == ("Q4_1", "int4")
    assert facts.offer.context_length == 2048 and facts.trained_context == 8192
    assert facts.chat_template


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"),
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "llama-3.2-1b-instruct"),
        ("qwen2.5-0.5b-instruct-q8_0.gguf", "qwen2.5-0.5b-instruct"),
        ("gemma-3-270m-it.F16.gguf", "gemma-3-270m-it"),
        ("mystery.gguf", "mystery"),
    ],
)
def test_model_id_drops_the_quantization_suffix(name: str, model_id: str) -> None:
    assert model_id_for(Path(name)) == model_id


def test_non_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(GgufError, match="bad magic"):
        read_metadata(bad)
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(bundled_model_path().read_bytes()[:100])
    with pytest.raises(GgufError):
        read_metadata(truncated)
