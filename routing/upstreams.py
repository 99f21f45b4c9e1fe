"""Static upstreams: any OpenAI-compatible server, described in the gateway's config.

One spec per server, as a line:

    URL model=NAME[:QUANT] [model=NAME2[:QUANT]] [context=N] [key_env=VAR] [health=/PATH]
        [capabilities=tools,structured_output,logprobs,embeddings,vision,generation|none] [max_n=N]

e.g. ``http://10.0.0.9:8000 model=llama-3.1-8b-instruct:awq context=8192
key_env=VLLM_API_KEY`` for ``vllm serve … --api-key``, or
``http://127.0.0.1:11434 model=llama3.2:Q4_K_M health=/`` for Ollama. The API
key is read from the environment variable named, so it never sits in a
config file. Without ``capabilities=`` the server is assumed able to do
whatever it is asked (it refuses the rest itself); with it, requests needing
anything else go to other workers, or get a 400 naming what is missing
(``capabilities=embeddings`` alone: an embedding model, which generates nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from routing.capabilities import ASSUMED, MAX_N, parse_capability_list
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
    capability_list, max_n = "", 0
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
        elif key == "capabilities":
            capability_list = value
        elif key == "max_n":
            if not value.isdigit() or not 1 <= int(value) <= MAX_N:
                raise ConfigError(f"gateway.upstreams: max_n must be an integer from 1 to {MAX_N} in {url}")
            max_n = int(value)
        else:
            raise ConfigError(
                f"gateway.upstreams: unknown key {key!r} in {url} "
                "(model, context, key_env, health, capabilities, max_n)"
            )
    if not models:
        raise ConfigError(f"gateway.upstreams: {url} needs at least one model=NAME[:QUANT]")
    if not capability_list:
        capabilities = replace(ASSUMED, max_n=max_n or ASSUMED.max_n)
    else:
        try:
            capabilities = parse_capability_list(capability_list, max_n or 1)
        except ValueError as exc:
            raise ConfigError(f"gateway.upstreams: {exc} in {url}") from None
    offers = []
    for model in models:
        ref = parse_model_ref(model)
        quantization = from_label(ref.quantization or "unknown")
        offers.append(ModelOffer(ref.name, quantization, context, "openai-compatible", capabilities=capabilities))
    return UpstreamSpec(url.rstrip("/"), tuple(offers), api_key, health)
