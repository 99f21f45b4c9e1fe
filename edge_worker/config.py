"""The worker's settings: one typed object per process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from routing.settings import require

DEFAULT_MAX_CONTEXT = 8192


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    # GGUF files to load; empty means the bundled SmolLM2-135M-Instruct.
    models: tuple[str, ...] = ()
    # Context window per model; 0 means the model's trained context, capped
    # at DEFAULT_MAX_CONTEXT to bound KV-cache memory on small hosts.
    context_length: int = 0
    # CPU threads for generation; 0 means every core.
    threads: int = 0
    # Requests allowed to wait per model while one generates; beyond → 503.
    max_queue: int = 16
    max_body_bytes: int = 4 * 1024 * 1024
    region: str = ""
    log_level: str = "info"

    def check(self) -> None:
        require(0 <= self.port <= 65535, "worker.port", f"must be 0-65535, got {self.port}")
        for model in self.models:
            require(Path(model).expanduser().is_file(), "worker.models", f"no such model file: {model}")
        require(self.context_length >= 0, "worker.context_length", "must be >= 0")
        require(self.threads >= 0, "worker.threads", "must be >= 0")
        require(self.max_queue >= 0, "worker.max_queue", "must be >= 0")
        require(self.max_body_bytes >= 1024, "worker.max_body_bytes", "must be >= 1024")
        require(
            self.log_level in ("debug", "info", "warning", "error"),
            "worker.log_level",
            "must be one of debug, info, warning, error",
        )
