"""Static upstreams: any OpenAI-compatible server, described in the gateway's config.

One spec per server, as a line:

    URL model=NAME[:QUANT] [model=NAME2[:QUANT]] [context=N] [key_env=VAR] [health=/PATH]

e.g. ``http://10.0.0.9:8000 model=llama-3.1-8b-instruct:awq context=8192
key_env=VLLM_API_KEY`` for ``vllm serve … --api-key``, or
``http://127.0.0.1:11434 model=llama3.2:Q4_K_M health=/`` for Ollama. The API
key is read from the environment variable named, so it never sits in a
config file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from routing.fleet import ModelOffer
from routing.model_ref import parse_model_ref
from routing.quantization import from_label
from routing.settings import ConfigError

DEFAULT_CONTEXT = 4096


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    url: str
    offers: tuple[ModelOffer, ...]
    api_key: str = field(default="", repr=False)
    health_path: str = "/health"


def parse_upstream(spec: str, env: Mapping[str, str]) -> UpstreamSpec:
    url, *pairs = spec.split()
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"gateway.upstreams: {url!r} is not an http(s) URL")
    models: list[str] = []
    context, api_key, health = DEFAULT_CONTEXT, "", "/health"
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value:
            raise ConfigError(f"gateway.upstreams: expected KEY=VALUE, got {pair!r} in {url}")
        if key == "model":
            models.append(value)
        elif key == "context":
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"gateway.upstreams: context must be a positive integer in {url}")
            context = int(value)
        elif key == "key_env":
            if value not in env:
                raise ConfigError(f"gateway.upstreams: ${value} (the API key for {url}) is not set")
            api_key = env[value]
        elif key == "health":
            health = value if value.startswith("/") else "/" + value
        else:
            raise ConfigError(f"gateway.upstreams: unknown key {key!r} in {url} (model, context, key_env, health)")
    if not models:
        raise ConfigError(f"gateway.upstreams: {url} needs at least one model=NAME[:QUANT]")
    offers = []
    for model in models:
        ref = parse_model_ref(model)
        offers.append(ModelOffer(ref.name, from_label(ref.quantization or "unknown"), context, "openai-compatible"))
    return UpstreamSpec(url.rstrip("/"), tuple(offers), api_key, health)
