"""One rule for ``model[:QUANT]`` everywhere: the last colon, and only when a quantization follows it."""

import pytest

from routing.model_ref import ModelRef, parse_model_ref


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("smollm2-135m-instruct", ModelRef("smollm2-135m-instruct")),
        ("smollm2-135m-instruct:Q8_0", ModelRef("smollm2-135m-instruct", "Q8_0")),
        ("smollm2-135m-instruct:q4_k_m", ModelRef("smollm2-135m-instruct", "q4_k_m")),
        ("qwen2.5-7b-instruct:int8", ModelRef("qwen2.5-7b-instruct", "int8")),
        ("qwen2.5-7b-instruct:awq", ModelRef("qwen2.5-7b-instruct", "awq")),
        ("llama3.2:3b", ModelRef("llama3.2:3b")),  # an Ollama tag, not a quantization
        ("llama3.2:3b:Q4_K_M", ModelRef("llama3.2:3b", "Q4_K_M")),
        (":Q8_0", ModelRef(":Q8_0")),  # no name before it
        ("model:", ModelRef("model:")),
    ],
)
def test_model_refs(ref: str, parsed: ModelRef) -> None:
    assert parse_model_ref(ref) == parsed
