import pytest

from routing.quantization import from_label
from routing.settings import ConfigError
from routing.upstreams import parse_upstream


def test_a_vllm_upstream_spec() -> None:
    spec = parse_upstream(
        "http://10.0.0.9:8000/ model=llama-3.1-8b-instruct:awq context=8192 key_env=K", {"K": "sk-secret"}
    )
    assert spec.url == "http://10.0.0.9:8000" and spec.api_key == "sk-secret" and spec.health_path == "/health"
    (offer,) = spec.offers
    assert (offer.model, offer.quantization.label, offer.quantization.quant_class) == (
        "llama-3.1-8b-instruct",
        "awq",
        "int4",
    )
    assert offer.context_length == 8192
    assert "sk-secret" not in repr(spec)


def test_an_ollama_upstream_keeps_its_own_tag_and_health_path() -> None:
    spec = parse_upstream("http://127.0.0.1:11434 model=llama3.2:latest:Q4_K_M health=/", {})
    assert spec.offers[0].model == "llama3.2:latest" and spec.offers[0].quantization.quant_class == "int4"
    assert spec.health_path == "/"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ftp://x model=m", "not an http"),
        ("http://x", "at least one model"),
        ("http://x model=m context=big", "context"),
        ("http://x model=m key_env=MISSING", r"\$MISSING"),
        ("http://x model=m colour=red", "unknown key"),
        ("http://x model", "KEY=VALUE"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_upstream(spec, {})


@pytest.mark.parametrize(
    ("label", "cls"),
    [("Q8_0", "int8"), ("q4_k_m", "int4"), ("BF16", "bf16"), ("fp8", "fp8"), ("gptq", "int4"), ("mystery", "unknown")],
)
def test_labels_map_to_classes(label: str, cls: str) -> None:
    assert from_label(label).quant_class == cls
